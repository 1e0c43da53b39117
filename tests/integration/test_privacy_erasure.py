"""Erasure against the real alerts pipeline: after `lyssna forget --author`, no Redis
value, API answer or delivery body holds that author's post texts, and the report
says what was there; POST /v1/erasures does the same for one post."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lyssna.common.pseudonyms import AUTHOR_KEY_VAR, parse_author_keys, pseudonym
from lyssna.local.receiver import WebhookReceiver
from tests.helpers import kafka_io
from tests.helpers.alerts_harness import (
    alerts_settings, api, breach, classified, count_rule, eventually, firing_delivery, produce, running_alerts,
    service_env, webhook,
)
from tests.helpers.redis_content import keys_holding, stored_keys

pytestmark = pytest.mark.integration

# Two keys, as during a rotation: Anna's older posts were signed with the old one.
AUTHOR_KEYS = f"k2:{'n' * 40},k1:{'o' * 40}"
LYSSNA = Path(sys.executable).with_name("lyssna")


def _by(handle: str, key_index: int, texts: list[str]):
    key = parse_author_keys(AUTHOR_KEYS)[key_index]
    return [classified("Acme", text=t).model_copy(update={"author": pseudonym(handle, key), "author_key_id": key.id})
            for t in texts]


def _texts(who: str, n: int) -> list[str]:
    return [f"{who} probe {uuid.uuid4().hex} says the overtime at Acme is too much" for _ in range(n)]


def _count(keys, texts: list[str], kind: str) -> int:
    """How many times ``texts`` occur in the keys of ``kind`` (sample_pool, event_samples)."""
    return sum(k.blob.count(t) for k in keys if k.key.split(":")[3] == kind for t in texts)


async def _fired_and_delivered(s, rx, client, posts) -> dict:
    await breach(s, "Acme", n=0)  # early in a window
    now = datetime.now(timezone.utc)  # written now, in this window (the posts were made before the wait)
    produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
            [p.model_copy(update={"created_at": now}) for p in posts])
    record = await eventually(lambda: firing_delivery(client, "r", "Acme", status="delivered"),
                              timeout=120, what="the alert delivered")
    await eventually(lambda: any(q.webhook_id == record["event_id"] for q in rx.ok), what="the body received")
    return record


async def test_forget_author_leaves_no_copy_and_reports_what_was_there(settings, monkeypatch):
    monkeypatch.setenv(AUTHOR_KEY_VAR, AUTHOR_KEYS)
    anna_texts, bo_texts = _texts("Anna", 4), _texts("Bo", 3)
    anna = _by("anna", 0, anna_texts[:2]) + _by("anna", 1, anna_texts[2:])
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("r", threshold=7)], webhooks=[webhook("hook", rx.url)],
                            samples_per_alert=20)
        async with running_alerts(s) as svc, api(svc) as client:
            record = await _fired_and_delivered(s, rx, client, anna + _by("bo", 0, bo_texts))
            first_body = next(q.body.decode() for q in rx.ok if q.webhook_id == record["event_id"])
            assert all(t in first_body for t in anna_texts)  # it was there to erase
            before = stored_keys(s.redis.url, s.redis.key_prefix)

            env = {**os.environ, **service_env(s, port=s.alerts.port, app_id=s.alerts.app_id)}
            run = await asyncio.to_thread(subprocess.run, [str(LYSSNA), "forget", "--author", "@Anna", "--json"],
                                          env=env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            report = json.loads(run.stdout)

            after = stored_keys(s.redis.url, s.redis.key_prefix)
            assert keys_holding(after, anna_texts) == {}
            assert keys_holding(after, bo_texts)  # nobody else's posts went
            for path in ("/v1/alerts", "/v1/alerts/history", f"/v1/alerts/{record['alert_id']}"):
                text = (await client.get(path)).text
                assert not any(t in text for t in anna_texts), path
            history = (await client.get("/v1/alerts/history")).text
            assert any(t in history for t in bo_texts)

            # A delivery sent after the erasure (a redelivery, like any retry) renders the erased event.
            again = await client.post(f"/v1/alerts/{record['alert_id']}/redeliver", json={"event_id": record["event_id"]})
            assert again.status_code == 202, again.text
            await eventually(lambda: len([q for q in rx.ok if q.webhook_id == record["event_id"]]) == 2,
                             what="the redelivery")
            second_body = [q.body.decode() for q in rx.ok if q.webhook_id == record["event_id"]][-1]
            assert not any(t in second_body for t in anna_texts)
            assert any(t in second_body for t in bo_texts)


        # Kafka still holds Anna's posts. A new deployment (fresh counts: another app id)
        # reads the topic again, and a replay arrives: neither brings her texts back.
        fresh = alerts_settings(settings, rules=[count_rule("r", threshold=7)], webhooks=[webhook("hook", rx.url)],
                                samples_per_alert=20)
        async with running_alerts(fresh):
            marker = _texts("Marker", 1)
            # One key, so one partition: the marker is counted after every replayed post.
            kafka_io.produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                             [(b"replay", p.to_bytes()) for p in anna + _by("bo", 0, marker)])
            await eventually(lambda: keys_holding(stored_keys(s.redis.url, s.redis.key_prefix), marker),
                             timeout=120, what="the replay counted")
        assert keys_holding(stored_keys(s.redis.url, s.redis.key_prefix), anna_texts) == {}

    assert report["target"] == "author"
    assert report["post_ids"] == sorted(p.id for p in anna)
    assert report["sample_pool_posts"] == _count(before, anna_texts, "sample_pool") == 4
    assert report["event_samples"] == _count(before, anna_texts, "event_samples") == 4
    assert report["events"] == 1
    now = datetime.now(timezone.utc)
    topics = {k["topic"]: datetime.fromisoformat(k["gone_by"]) for k in report["kafka"]}
    assert set(topics) >= {s.kafka.topics.posts_raw, s.kafka.topics.posts_classified, s.kafka.topics.deadletter,
                           s.kafka.topics.alerts_events}
    assert all(gone > now for gone in topics.values())


async def test_erasure_endpoint_forgets_one_post(settings, monkeypatch):
    monkeypatch.setenv(AUTHOR_KEY_VAR, AUTHOR_KEYS)
    texts = _texts("Cecilia", 3)
    posts = _by("cecilia", 0, texts)
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("r", threshold=3)], webhooks=[webhook("hook", rx.url)],
                            samples_per_alert=20)
        async with running_alerts(s) as svc, api(svc) as client:
            await _fired_and_delivered(s, rx, client, posts)
            for bad in ({}, {"author": "x", "post_id": "y"}):
                assert (await client.post("/v1/erasures", json=bad)).status_code == 422
            answer = await client.post("/v1/erasures", json={"post_id": posts[0].id})
            assert answer.status_code == 200, answer.text
            report = answer.json()
            left = keys_holding(stored_keys(s.redis.url, s.redis.key_prefix), texts)
    assert report["post_ids"] == [posts[0].id]
    assert (report["target"], report["sample_pool_posts"], report["event_samples"]) == ("post", 1, 1)
    assert not any(texts[0] in found for found in left.values())
    assert all(any(t in found for found in left.values()) for t in texts[1:])
