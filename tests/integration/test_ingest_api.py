"""POST /v1/posts against the real Kafka and Redis: exactly once per id on the
topic, per-item answers, limits, auth, readiness and metrics."""

import json
import os

import pytest
from tests.helpers.ingest_support import (
    API_KEY, AUTH, atopic_ids, free_port, pushed_id, read_topic, running_app,
)

from lyssna.common.contracts import Post, content_post_id
from lyssna.common.pseudonyms import author_pseudonymizer
from tests.helpers.problems import problem
from lyssna.ingest.dedup import Dedup

pytestmark = pytest.mark.integration
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}


def ndjson(items) -> bytes:
    return ("\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n").encode()


def statuses(resp) -> list[str]:
    return [r["status"] for r in resp.json()["results"]]


async def test_accepted_posts_are_on_the_topic_exactly_once_per_id(settings, topics, infra):
    batch_a = [{"id": f"a{i}", "text": f"Acme post {i}", "author": "kim", "lang": "sv"} for i in range(10)]
    batch_b = batch_a[5:] + [{"id": f"b{i}", "text": f"Nordvik {i}"} for i in range(5)] \
        + [{"id": "b0", "text": "Nordvik 0"}, {"id": "x", "text": ""}]
    async with running_app(settings) as (_, client):
        r = await client.post("/v1/posts", content=ndjson(batch_a), headers=NDJSON)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 10 and statuses(r) == ["accepted"] * 10
        r = await client.post("/v1/posts", json=batch_b, headers=AUTH)
        assert r.status_code == 200
        assert statuses(r) == ["duplicate"] * 5 + ["accepted"] * 5 + ["duplicate", "rejected"]
        assert r.json()["results"][-1]["reason"] == "text: is empty"
        assert (r.json()["accepted"], r.json()["duplicate"], r.json()["rejected"]) == (5, 6, 1)
        r = await client.post("/v1/posts", content=ndjson(batch_a), headers=NDJSON)
        assert statuses(r) == ["duplicate"] * 10

    records = read_topic(infra.bootstrap_servers, topics.posts_raw)
    ids = [json.loads(v)["id"] for _, v in records]
    assert sorted(ids) == sorted([pushed_id(f"a{i}") for i in range(10)] + [pushed_id(f"b{i}") for i in range(5)])
    for key, value in records:
        post = Post.from_bytes(value)
        assert key == post.id.encode() and post.source == "http"


async def test_one_object_without_id_gets_a_content_id_and_dedups(settings, topics, infra):
    item = {"text": "Kvarnby Bank svarar aldrig på mejl", "author": "anna", "mood": "tired"}
    async with running_app(settings) as (_, client):
        first = await client.post("/v1/posts", json=item, headers=AUTH)
        second = await client.post("/v1/posts", json=item, headers=AUTH)
    # Derived from the author's pseudonym (privacy.authors: pseudonymous), never the handle.
    expected = content_post_id("http", author_pseudonymizer("pseudonymous", os.environ)("anna"), item["text"])
    assert first.json()["results"] == [{"index": 0, "id": expected, "status": "accepted",
                                        "ignored_fields": ["mood"]}]
    assert second.json()["results"][0]["status"] == "duplicate"
    assert await atopic_ids(infra.bootstrap_servers, topics.posts_raw) == [expected]


async def test_limits_and_malformed_bodies_accept_nothing(settings, topics, infra):
    small = settings.model_copy(update={"ingest": settings.ingest.model_copy(
        update={"max_body_bytes": 2048, "max_batch_items": 3, "max_text_chars": 50})})
    async with running_app(small) as (_, client):
        big = ndjson([{"text": "x" * 40, "id": str(i)} for i in range(60)])
        r = await client.post("/v1/posts", content=big, headers=NDJSON)
        assert r.status_code == 413 and "2048 bytes" in problem(r, 413)["detail"]

        async def streamed():  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b'{"text": "' + b"y" * 500 + b'"}\n'
        r = await client.post("/v1/posts", content=streamed(), headers=NDJSON)
        assert r.status_code == 413

        r = await client.post("/v1/posts", json=[{"text": "a"}] * 4, headers=AUTH)
        assert r.status_code == 413 and problem(r, 413)["max_batch_items"] == 3

        r = await client.post("/v1/posts", content=b'[{"text": "a"},\n {"text": }]', headers=AUTH)
        assert r.status_code == 400
        assert problem(r, 400)["position"] == {"line": 2, "column": 11, "byte_offset": 26}

        r = await client.post("/v1/posts", content=b'{"text": "caf\xe9"}', headers=AUTH)
        assert r.status_code == 400 and r.json()["position"]["byte_offset"] == 13
        assert "not valid UTF-8" in r.json()["detail"]

        r = await client.post("/v1/posts", content=b"text=hello", headers={**AUTH, "Content-Type": "text/plain"})
        assert "unsupported media type" in problem(r, 415)["detail"]

        r = await client.post("/v1/posts", json=[{"text": "k" * 51}], headers=AUTH)
        assert r.status_code == 200 and statuses(r) == ["rejected"]
        assert r.json()["results"][0]["reason"].startswith("text: 51 characters, the limit is 50")
    assert await atopic_ids(infra.bootstrap_servers, topics.posts_raw) == []


async def test_api_key_is_required_and_never_echoed(settings):
    async with running_app(settings) as (_, client):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"},
                        {"Authorization": "Bearer sk\u00e9".encode("latin-1")}):
            r = await client.post("/v1/posts", json={"text": "t"}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        for path in ("/healthz", "/readyz", "/metrics"):
            r = await client.get(path)
            assert r.status_code == 200 and API_KEY not in r.text
    keyless = settings.model_copy(update={"api_keys": []})
    async with running_app(keyless) as (_, client):
        r = await client.post("/v1/posts", json={"text": "t"}, headers={"Authorization": "Bearer "})
        assert r.status_code == 401


async def test_id_reserved_by_another_request_is_retryable_not_duplicate(settings, infra, topics):
    import redis.asyncio as aioredis

    client_r = aioredis.Redis.from_url(infra.redis_url)
    other = Dedup(client_r, settings.redis.key_prefix, ttl_s=60)
    token, _ = await other.reserve([pushed_id("busy-1")])
    async with running_app(settings) as (_, client):
        r = await client.post("/v1/posts", json={"id": "busy-1", "text": "t"}, headers=AUTH)
        result = r.json()["results"][0]
        assert result["status"] == "rejected" and result["retryable"] is True
        await other.release(token, [pushed_id("busy-1")])
        r = await client.post("/v1/posts", json={"id": "busy-1", "text": "t"}, headers=AUTH)
        assert statuses(r) == ["accepted"]
    await client_r.aclose()
    assert await atopic_ids(infra.bootstrap_servers, topics.posts_raw) == [pushed_id("busy-1")]


async def test_redis_down_is_503_and_readyz_names_it(settings, infra, topics):
    no_redis = settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{free_port()}/0"})})
    async with running_app(no_redis) as (_, client):
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "not ready", "checks": {"kafka": "ok", "redis": "down"}}
        r = await client.post("/v1/posts", json=[{"text": "a"}, {"text": 1}], headers=AUTH)
        assert r.status_code == 503 and problem(r, 503)["unavailable"] == "redis"
        assert r.headers["retry-after"] == "5"
        assert [x["status"] for x in r.json()["results"]] == ["rejected", "rejected"]
        assert (await client.get("/healthz")).status_code == 200
    assert await atopic_ids(infra.bootstrap_servers, topics.posts_raw) == []


async def test_metrics_count_by_source_and_outcome(settings):
    async with running_app(settings) as (app, client):
        await client.post("/v1/posts", json=[{"id": "m1", "text": "a"}, {"id": "m1", "text": "a"},
                                             {"text": ""}], headers=AUTH)
        text = (await client.get("/metrics")).text
    assert 'lyssna_ingest_posts_received_total{source="http"} 3.0' in text
    for outcome in ("accepted", "duplicate", "rejected"):
        assert f'lyssna_ingest_posts_total{{outcome="{outcome}",source="http"}} 1.0' in text
    assert "lyssna_ingest_produce_latency_seconds_count 1.0" in text
    assert "# TYPE lyssna_ingest_connector_errors_total counter" in text


async def test_concurrent_requests_with_the_same_ids_produce_each_once(settings, infra, topics):
    import asyncio

    items = [{"id": f"c{i}", "text": f"Kvarnby {i}"} for i in range(50)]
    async with running_app(settings) as (_, client):
        responses = await asyncio.gather(*(client.post("/v1/posts", content=ndjson(items), headers=NDJSON)
                                           for _ in range(4)))
        results = [x for r in responses for x in r.json()["results"]]
        accepted = [x["id"] for x in results if x["status"] == "accepted"]
        assert sorted(accepted) == sorted(pushed_id(i["id"]) for i in items)    # each id accepted by one request
        assert all(x["status"] == "duplicate" or x.get("retryable") for x in results
                   if x["status"] != "accepted")
    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert sorted(ids) == sorted(pushed_id(i["id"]) for i in items)
