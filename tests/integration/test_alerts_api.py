"""The alerts API over real HTTP, with the service running against Kafka and Redis."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from lyssna.alerts.signing import generate_secret
from tests.helpers.alerts_harness import (
    alerts_settings, classified, count_rule, early_in_window, eventually, produce, running_alerts, webhook,
)
from lyssna.local.receiver import WebhookReceiver
from tests.helpers.problems import problem

pytestmark = pytest.mark.integration

SECRET_ENV = "LYSSNA_TEST_API_WEBHOOK_SECRET"
TOKEN = "T0KEN-in-the-path"


def client_for(svc, key: str | None = "default") -> httpx.AsyncClient:
    s = svc.settings
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {s.api_keys[0] if key == 'default' else key}"
    return httpx.AsyncClient(base_url=f"http://{s.alerts.host}:{s.alerts.port}", headers=headers, timeout=10)


async def test_auth_health_webhooks_and_silences(settings, monkeypatch):
    secret = generate_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    with WebhookReceiver(secrets=secret) as rx:
        url = f"http://127.0.0.1:{rx.port}/hooks/{TOKEN}?sig=query-secret"
        s = alerts_settings(settings, rules=[count_rule("cfg-rule")],
                            webhooks=[webhook("hook", url, secret_env=SECRET_ENV)])
        seen: list[str] = []
        async with running_alerts(s) as svc, client_for(svc) as api, client_for(svc, None) as anon, \
                client_for(svc, "wrong-key") as wrong:
            for path in ("/v1/rules", "/v1/alerts", "/v1/silences", "/v1/webhooks", "/v1/alerts/history"):
                for c in (anon, wrong):
                    r = await c.get(path)
                    assert r.status_code == 401, (path, r.status_code)
                    assert r.headers["www-authenticate"] == "Bearer"
            assert (await anon.get("/healthz")).json() == {"status": "ok"}
            ready = await eventually(lambda: _ready(anon), what="/readyz to say ready")
            assert ready["checks"] == {"redis": "ok", "kafka": "ok", "counts": "ok"}
            metrics = (await anon.get("/metrics")).text
            for name in ("lyssna_alerts_events_total", "lyssna_alerts_deliveries_total",
                         "lyssna_alerts_delivery_latency_seconds", "lyssna_alerts_retry_queue_depth",
                         "lyssna_consumer_lag_messages", "lyssna_deadletter_records_total"):
                assert f"# TYPE {name}" in metrics
            assert 'lyssna_alerts_events_total{rule="cfg-rule",state="firing"} 0.0' in metrics
            seen.append(metrics)

            hooks = (await api.get("/v1/webhooks")).json()["webhooks"]
            assert hooks == [{"name": "hook", "url": f"http://127.0.0.1:{rx.port}/***", "format": "json",
                              "signed": True, "allow_private_network": True, "enabled": True,
                              "disabled_at": None, "disabled_reason": None}]
            off = (await api.post("/v1/webhooks/hook/disable")).json()
            assert off["enabled"] is False and off["disabled_reason"] == "disabled through the API"
            assert (await api.post("/v1/webhooks/hook/enable")).json()["enabled"] is True
            assert (await api.post("/v1/webhooks/nope/enable")).status_code == 404
            seen.append(str(hooks))

            bad_label = await api.post("/v1/silences", json={
                "matchers": {"colour": "red"}, "ends_at": "2999-01-01T00:00:00Z", "created_by": "t"})
            assert "unknown label 'colour'" in problem(bad_label, 422)["errors"][0]["msg"]
            backwards = await api.post("/v1/silences", json={
                "matchers": {"org": "Acme"}, "starts_at": "2999-01-02T00:00:00Z",
                "ends_at": "2999-01-01T00:00:00Z", "created_by": "t"})
            assert "ends_at must be after starts_at" in problem(backwards, 422)["detail"]
            later = await api.post("/v1/silences", json={
                "matchers": {"org=~": "Acme|Globex"}, "starts_at": "2999-01-01T00:00:00Z",
                "ends_at": "2999-01-02T00:00:00Z", "created_by": "ops", "comment": "planned"})
            now = await api.post("/v1/silences", json={
                "matchers": {"rule": "cfg-rule"}, "ends_at": "2999-01-01T00:00:00Z", "created_by": "ops"})
            assert later.status_code == now.status_code == 201
            ids = {later.json()["id"], now.json()["id"]}
            assert {x["id"] for x in (await api.get("/v1/silences")).json()["silences"]} == ids
            assert [x["id"] for x in (await api.get("/v1/silences?active=true")).json()["silences"]] == [now.json()["id"]]
            assert (await api.get(f"/v1/silences/{now.json()['id']}")).json()["matchers"] == {"rule": "cfg-rule"}
            assert (await api.delete(f"/v1/silences/{now.json()['id']}")).status_code == 204
            assert (await api.get(f"/v1/silences/{now.json()['id']}")).status_code == 404
            assert (await api.delete(f"/v1/silences/{now.json()['id']}")).status_code == 404
            assert (await api.get("/v1/deliveries/evt_nope:hook")).status_code == 404
            assert problem(await api.get("/v1/alerts/alr_nope"), 404)["detail"] == "no alert 'alr_nope'"
            # A query the document does not allow is refused, not guessed at.
            for query in ("limit=1.0", "limit=0", "before=1700000000", "before=2026-01-01T00:00:00"):
                r = await api.get(f"/v1/alerts/history?{query}")
                assert problem(r, 422)["errors"][0]["loc"][0] == "query", (query, r.text)
            assert problem(await api.get("/v1/silences?active=yes"), 422)["errors"][0]["loc"] == ["query", "active"]
        for text in seen:
            assert TOKEN not in text and "query-secret" not in text and secret not in text


async def test_scoped_keys_and_unsafe_silence_patterns(settings):
    s = alerts_settings(settings, rules=[count_rule("cfg-rule")], webhooks=[webhook("hook", "http://127.0.0.1:9/")])
    s = s.model_copy(update={"scoped_api_keys": {"ingest": ["push-key-1"], "read": ["read-key-1"],
                                                 "admin": ["admin-key-1"]}})
    silence = {"matchers": {"org": "Acme"}, "ends_at": "2999-01-01T00:00:00Z", "created_by": "ops"}
    rule = count_rule("api-rule", notify=[])
    async with running_alerts(s) as svc, client_for(svc, "push-key-1") as push, \
            client_for(svc, "read-key-1") as reader, client_for(svc, "admin-key-1") as admin:
        # A push client's key can neither read nor silence, disable or change anything.
        for r in (await push.post("/v1/silences", json=silence), await push.post("/v1/rules", json=rule),
                  await push.post("/v1/webhooks/hook/disable"), await push.get("/v1/rules")):
            assert r.status_code == 403, r.text
        assert "this key lacks the 'admin' scope" in (await push.post("/v1/silences", json=silence)).text
        # A reader sees everything and changes nothing.
        for path in ("/v1/rules", "/v1/silences", "/v1/webhooks", "/v1/alerts", "/openapi.json"):
            assert (await reader.get(path)).status_code == 200, path
        for r in (await reader.post("/v1/silences", json=silence), await reader.post("/v1/rules", json=rule),
                  await reader.delete("/v1/rules/cfg-rule"), await reader.post("/v1/webhooks/hook/disable"),
                  await reader.post("/v1/deliveries/d1/redeliver")):
            assert r.status_code == 403 and "lacks the 'admin' scope" in r.text, r.text
        assert (await admin.get("/v1/webhooks")).json()["webhooks"][0]["enabled"] is True

        # Patterns that backtrack catastrophically, RE2 cannot run, or are too long are refused.
        for pattern, fragment in [("(a+)+$", "repeated group contains a quantifier"),
                                  ("(x+x+)+y", "repeated group contains a quantifier"),
                                  ("(\\w+\\s?)*$", "repeated group contains a quantifier"),
                                  ("(a)\\1", "invalid regular expression"),
                                  ("(?=Acme)A.*", "invalid regular expression"),
                                  ("A" * 300, "at most 256 characters")]:
            r = await admin.post("/v1/silences", json={**silence, "matchers": {"org=~": pattern}})
            assert r.status_code == 422 and fragment in r.text, (pattern, r.text)
            assert problem(r, 422)["errors"][0]["loc"][:2] == ["body", "matchers"]
            assert "input" not in r.json()["errors"][0]  # the answer does not repeat the body
        assert (await admin.get("/v1/silences")).json()["silences"] == []
        ok = await admin.post("/v1/silences", json={**silence, "matchers": {"org=~": "Acme.*|Globex"}})
        assert ok.status_code == 201, ok.text
        assert (await admin.post("/v1/webhooks/hook/disable")).json()["enabled"] is False


async def _ready(client: httpx.AsyncClient):
    r = await client.get("/readyz")
    return r.json() if r.status_code == 200 else None


async def test_rules_crud_and_an_api_rule_that_fires(settings):
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("cfg-rule", threshold=1000)],
                            webhooks=[webhook("hook", rx.url)])
        async with running_alerts(s) as svc, client_for(svc) as api:
            listed = (await api.get("/v1/rules")).json()["rules"]
            assert [(r["source"], r["rule"]["name"]) for r in listed] == [("config", "cfg-rule")]
            assert listed[0]["rule"]["window"] == "20s"

            def rule(**kw):
                return {**count_rule("api-rule", threshold=2, window="20s"), **kw}

            for body, fragment in [
                (rule(notify=["nope"]), "unknown webhook 'nope'"),
                (rule(org="Umbrella"), "unknown organization 'Umbrella'"),
                (rule(window="1500ms"), "not a whole number of count buckets"),
                (rule(window="10d"), "longer than counts are kept"),
                (rule(condition={"type": "spike", "factor": 3, "z_score": 2}), "exactly one of 'factor' or 'z_score'"),
                (rule(condition={"type": "median"}), "type"),
                (rule(name="has space"), "pattern"),
                (rule(condition={"type": "count", "threshold": "2"}), "valid integer"),  # as typed, not guessed
                (rule(window="20S"), "not a duration"),
            ]:
                r = await api.post("/v1/rules", json=body)
                assert fragment in problem(r, 422)["detail"], (fragment, r.text)
            assert (await api.post("/v1/rules", json=rule(name="cfg-rule"))).status_code == 409
            created = await api.post("/v1/rules", json=rule())
            assert created.status_code == 201, created.text
            assert created.json() == {"source": "api", "rule": {**created.json()["rule"], "name": "api-rule"}}
            assert (await api.post("/v1/rules", json=rule())).status_code == 409
            assert (await api.put("/v1/rules/cfg-rule", json=rule(name="cfg-rule"))).status_code == 409
            assert (await api.delete("/v1/rules/cfg-rule")).status_code == 409
            assert (await api.put("/v1/rules/api-rule", json=rule(name="other"))).status_code == 422
            changed = await api.put("/v1/rules/api-rule", json=rule(condition={"type": "count", "threshold": 3}))
            assert changed.status_code == 200
            assert (await api.get("/v1/rules/api-rule")).json()["rule"]["condition"]["threshold"] == 3

            # The API rule is evaluated like a config rule.
            await early_in_window(timedelta(seconds=20), need=timedelta(seconds=12))
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                    [classified("Globex") for _ in range(3)])

            async def api_alert():
                alerts = (await api.get("/v1/alerts")).json()["alerts"]
                return [a for a in alerts if a["rule"] == "api-rule"]

            [alert] = await eventually(api_alert, what="the API rule to fire")
            assert alert["org"] == "Globex" and alert["event"]["count"] == 3

            async def delivered():
                ds = (await api.get(f"/v1/alerts/{alert['alert_id']}/deliveries")).json()["deliveries"]
                return ds if ds and ds[0]["status"] == "delivered" else None

            [first] = await eventually(delivered, what="the API rule's alert delivered")
            assert first["attempts"][0]["status_code"] == 200
            open_redelivery = await api.post(f"/v1/deliveries/{first['id']}/redeliver")
            assert open_redelivery.status_code == 202

            async def delivered_twice():
                d = (await api.get(f"/v1/deliveries/{first['id']}")).json()
                return d if d["status"] == "delivered" and d["redeliveries"] == 1 else None

            again = await eventually(delivered_twice, what="the redelivery")
            assert len(again["attempts"]) == 2
            # A redelivery is the same message: same webhook-id.
            assert [q.webhook_id for q in rx.ok].count(first["event_id"]) == 2

            assert (await api.delete("/v1/rules/api-rule")).status_code == 204
            assert (await api.get("/v1/rules/api-rule")).status_code == 404
            assert await api_alert() == []
            assert (await api.delete("/v1/rules/api-rule")).status_code == 404
