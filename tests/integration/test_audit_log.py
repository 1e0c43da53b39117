"""The audit log over the real alerts API and Redis: which key (by its id, never the
key) changed rules, silences and webhooks or erased data; admin-only, paged, bounded."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from lyssna.alerts.audit import AuditLog
from lyssna.common.auth import key_id
from lyssna.common.config import RetentionSettings
from lyssna.local.receiver import WebhookReceiver
from tests.helpers.alerts_harness import alerts_settings, count_rule, running_alerts, webhook

pytestmark = pytest.mark.integration

ADMIN_KEY, READ_KEY = "admin-key-for-audit-1", "read-key-for-audit-1"


def _client(svc, key: str) -> httpx.AsyncClient:
    s = svc.settings
    return httpx.AsyncClient(base_url=f"http://{s.alerts.host}:{s.alerts.port}",
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)


async def test_changes_and_erasures_are_recorded_with_the_key_id(settings):
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, webhooks=[webhook("hook", rx.url)])
        s = s.model_copy(update={"scoped_api_keys": {"admin": [ADMIN_KEY], "read": [READ_KEY]}})
        async with running_alerts(s) as svc, _client(svc, ADMIN_KEY) as admin, \
                _client(svc, s.api_keys[0]) as owner, _client(svc, READ_KEY) as reader:
            rule = count_rule("api-rule", notify=["hook"])
            assert (await admin.post("/v1/rules", json=rule)).status_code == 201
            assert (await admin.put("/v1/rules/api-rule", json={**rule, "cooldown": "2h"})).status_code == 200
            assert (await admin.post("/v1/rules", json=rule)).status_code == 409  # refused: not recorded
            silence = (await admin.post("/v1/silences", json={"matchers": {"org": "Acme"}, "created_by": "hr",
                                                              "comment": "known issue",
                                                              "ends_at": "2999-01-01T00:00:00Z"})).json()
            assert (await admin.delete(f"/v1/silences/{silence['id']}")).status_code == 204
            assert (await owner.post("/v1/webhooks/hook/disable")).status_code == 200
            assert (await owner.post("/v1/webhooks/hook/enable")).status_code == 200
            assert (await admin.delete("/v1/rules/api-rule")).status_code == 204
            erased = await admin.post("/v1/erasures", json={"post_id": "secret-post-id-42"})
            assert erased.status_code == 200, erased.text

            assert (await reader.get("/v1/audit")).status_code == 403  # which key did what: admins only
            answer = await admin.get("/v1/audit")
            assert answer.status_code == 200
            entries = answer.json()["entries"]
            first_page = (await admin.get("/v1/audit", params={"limit": 3})).json()["entries"]
            rest = (await admin.get("/v1/audit", params={"limit": 100,
                                                         "before": first_page[-1]["at"]})).json()["entries"]
            bad = await admin.get("/v1/audit", params={"before": "yesterday"})

    assert [(e["action"], e["target"], e["actor"]) for e in reversed(entries)] == [
        ("rule.create", "api-rule", key_id(ADMIN_KEY)),
        ("rule.replace", "api-rule", key_id(ADMIN_KEY)),
        ("silence.create", silence["id"], key_id(ADMIN_KEY)),
        ("silence.delete", silence["id"], key_id(ADMIN_KEY)),
        ("webhook.disable", "hook", key_id(s.api_keys[0])),
        ("webhook.enable", "hook", key_id(s.api_keys[0])),
        ("rule.delete", "api-rule", key_id(ADMIN_KEY)),
        ("erasure", "post", key_id(ADMIN_KEY)),
    ]
    assert entries[0]["detail"] == {"posts": 1, "removed": 0}
    assert first_page + rest == entries
    assert bad.status_code == 422
    text = answer.text
    assert ADMIN_KEY not in text and s.api_keys[0] not in text
    assert "secret-post-id-42" not in text  # an erasure's entry never says whose


async def test_the_log_is_bounded_in_entries_and_time(settings):
    client = aioredis.Redis.from_url(settings.redis.url)
    try:
        log = AuditLog(client, f"{settings.redis.key_prefix}alerts:",
                       RetentionSettings(audit_log=timedelta(days=2), audit_entries=100))
        for i in range(105):
            await log.record("key_x", "rule.create", f"r{i}")
        kept = await log.entries(limit=1000)
        ttl = await client.ttl(log.key)
    finally:
        await client.aclose()
    assert [e.target for e in kept] == [f"r{i}" for i in range(104, 4, -1)]
    assert 0 < ttl <= 2 * 86_400
