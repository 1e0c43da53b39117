"""Privacy by default, end to end: posts whose author has a distinctive handle go
through ingest -> classify -> alerts to a firing alert delivered to a webhook,
with the default settings (privacy.authors: pseudonymous, masked samples). Afterwards
the handle is in no Kafka record of any of the stack's topics, no Redis key or
value, no log line, no /metrics output and no webhook request."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import httpx
import pytest
import redis
from kafka import KafkaAdminClient

from lyssna.common.pseudonyms import author_pseudonymizer
from tests.helpers.alerts_harness import early_in_window_sync
from tests.helpers.kafka_io import read_topic, wait_for
from tests.helpers.ingest_support import pushed_id

from .support import ORGS, THRESHOLD, WINDOW_S, burst

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _stack_topics(bootstrap: str, uid: str) -> list[str]:
    """Every topic of this stack: its own four and the alerts' Faust topics (mentions, changelog)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="e2e-privacy")
    try:
        return sorted(t for t in admin.list_topics() if uid in t)
    finally:
        admin.close()


def _redis_text(redis_url: str, prefix: str) -> dict[str, str]:
    """Key -> the key and everything it holds, as text, whatever the type."""
    client = redis.Redis.from_url(redis_url)
    read = {"string": lambda k: [client.get(k) or b""],
            "hash": lambda k: [b for pair in client.hgetall(k).items() for b in pair],
            "list": lambda k: client.lrange(k, 0, -1),
            "set": lambda k: list(client.smembers(k)),
            "zset": lambda k: client.zrange(k, 0, -1)}
    try:
        out = {}
        for key in client.scan_iter(f"{prefix}*", count=1000):
            kind = client.type(key).decode()
            assert kind in read, f"{key!r} is a Redis {kind}, which this test cannot read"
            out[key.decode()] = "\n".join(b.decode("utf-8", "replace") for b in [key, *read[kind](key)])
        return out
    finally:
        client.close()


def test_a_distinctive_author_handle_leaves_no_trace_anywhere(e2e):
    org = ORGS[1]
    marker = uuid.uuid4().hex[:12]
    handle = f"@Sigrid.Tornqvist_{marker}@mastodon.example"
    posts = [{**p, "author": handle} for p in burst(org, THRESHOLD)]
    early_in_window_sync(timedelta(seconds=WINDOW_S), need=timedelta(seconds=12))
    r = e2e.push(posts)
    assert r.status_code == 200 and r.json()["accepted"] == THRESHOLD, r.text

    assert e2e.receiver.wait_for(lambda rx: e2e.alerts_for(org), timeout=120), \
        f"no alert for {org}; alerts log:\n{e2e.stack['alerts'].log_tail()}"
    alert = e2e.alerts_for(org)[0].json
    assert alert["samples"] and all(s["text"] for s in alert["samples"])  # samples go out as masked text
    assert alert["authors"] == 1  # one person, however many posts

    # The posts did carry an author: as the pseudonym, with its key id.
    ids = {pushed_id(p["id"], p["source"]) for p in posts}
    authors = author_pseudonymizer("pseudonymous", os.environ)
    raw = [json.loads(v) for _, v in read_topic(e2e.bootstrap, e2e.topics["posts_raw"])]
    assert {(p["author"], p["author_key_id"]) for p in raw if p["id"] in ids} == {(authors(handle), authors.key_id)}

    needles = [marker, "tornqvist"]  # any part of the handle, in any case

    def leaks(where: str, text: str) -> list[str]:
        return [f"{where}: {n!r}" for n in needles if n in text.lower()]

    found: list[str] = []
    topics = _stack_topics(e2e.bootstrap, e2e.uid)
    assert set(e2e.topics.values()) <= set(topics) and any("changelog" in t for t in topics), topics
    for topic in topics:
        for key, value in read_topic(e2e.bootstrap, topic):
            found += leaks(f"kafka {topic}", (key or b"").decode("utf-8", "replace")
                           + "\n" + (value or b"").decode("utf-8", "replace"))

    stored = _redis_text(e2e.redis_url, f"e2e:{e2e.uid}:")
    assert stored, "the stack stored nothing in Redis?"
    for key, text in stored.items():
        found += leaks(f"redis {key}", text)

    for svc in e2e.stack.services.values():
        found += leaks(f"{svc.service} /metrics", httpx.get(f"{svc.url}/metrics", timeout=10).text)
        found += leaks(f"{svc.service} log", svc.logfile.read_text(encoding="utf-8", errors="replace"))

    for req in e2e.receiver.requests:
        found += leaks("webhook request", req.body.decode("utf-8", "replace") + json.dumps(dict(req.headers)))

    assert found == [], found
