"""Every connector against a local server speaking its source's wire format,
through the real pipeline into Kafka, and restarted: it must resume from the
cursor it stored in Redis, neither losing nor repeating posts."""

import json
import shutil
from contextlib import asynccontextmanager

import pytest
from tests.helpers.ingest_support import (
    AUTH, FEEDS, FeedServer, JetstreamServer, MastodonServer, ScriptedServer, atopic_ids,
    load_jetstream_events, load_statuses, make_status, post_event, read_topic, eventually, running_app,
)

from lyssna.common.config import BlueskySource, MastodonSource, RssSource
from lyssna.common.contracts import DeadLetter, Post
from lyssna.common.urlsafety import why_not_public
from lyssna.ingest.app import build_state
from lyssna.ingest.connectors.base import CursorStore, SourceError
from lyssna.ingest.connectors.bluesky import BlueskyConnector, event_to_post
from lyssna.ingest.connectors.fetch import FetchPolicy
from lyssna.ingest.connectors.jsonl import JsonlConnector
from lyssna.ingest.connectors.mastodon import MastodonConnector
from lyssna.ingest.connectors.rss import RssConnector, parse_feed
from lyssna.ingest.runner import ConnectorRunner

pytestmark = pytest.mark.integration


@asynccontextmanager
async def service(settings, connector):
    """One life of the ingest service running ``connector``; leaving it is a stop."""
    state = build_state(settings, delivery_timeout_s=10)
    cursors = CursorStore(state.redis, settings.redis.key_prefix)
    runner = ConnectorRunner([connector], state.pipeline, cursors, state.metrics)
    runner.start()
    try:
        yield runner, cursors, state.metrics
    finally:
        await runner.stop()
        await state.producer.close()
        await state.redis.aclose()


def received(metrics, source: str) -> float:
    return metrics.value("lyssna_ingest_posts_received_total", source=source)


def handled(metrics, source: str) -> float:
    """Posts with an outcome (accepted, duplicate or rejected)."""
    return sum(metrics.value("lyssna_ingest_posts_total", source=source, outcome=o)
               for o in ("accepted", "duplicate", "rejected"))


async def cursor_is(cursors, key: str, value: str) -> bool:
    return await cursors.get(key) == value


def assert_once(ids: list[str]) -> None:
    assert len(ids) == len(set(ids)), f"repeated on the topic: {sorted(ids)}"


# ------------------------------------------------------------------ RSS / Atom

NEW_ITEM = b"""    <item>
      <title>Acme Robotics inf&#246;r fyradagarsvecka</title>
      <link>https://news.example.se/arbetsliv/acme-fyradagarsvecka</link>
      <guid isPermaLink="false">news.example.se:article:88130</guid>
      <pubDate>Wed, 06 May 2026 07:00:00 +0200</pubDate>
      <description>Personalen jublar &amp;amp; facket &#228;r positivt.</description>
    </item>
  </channel>"""


async def test_rss_conditional_polling_and_resume_from_validators(settings, infra, topics):
    body = (FEEDS / "rss_entities.xml").read_bytes()
    with FeedServer(body) as srv:
        src = RssSource(type="rss", url=f"{srv.base}/arbetsliv/feed.xml", interval="200ms",
                        allow_private_network=True)

        async with service(settings, RssConnector(src, "hr-news")) as (runner, cursors, metrics):
            key = runner.connectors[0].cursor_key
            await eventually(lambda: any(r.status == 304 for r in srv.requests), what="a 304 poll")
            stored = json.loads(await cursors.get(key))
            assert stored == {"etag": srv.etag, "modified": srv.last_modified}
            assert received(metrics, "rss") == 3
        first_run = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
        assert len(first_run) == 3

        before = len(srv.requests)
        async with service(settings, RssConnector(src, "hr-news")) as (runner, cursors, metrics):
            await eventually(lambda: len(srv.requests) > before, what="the first poll after restart")
            first = srv.requests[before]
            assert first.headers["if-none-match"] == srv.etag and first.status == 304
            assert first.headers["if-modified-since"] == srv.last_modified
            assert received(metrics, "rss") == 0          # nothing re-read after the restart

            srv.set_body(body.replace(b"  </channel>", NEW_ITEM))
            await eventually(lambda: metrics.value("lyssna_ingest_posts_total", source="rss",
                                                   outcome="accepted") == 1, what="the changed feed")
            assert metrics.value("lyssna_ingest_posts_total", source="rss", outcome="duplicate") == 3
            assert received(metrics, "rss") == 4

    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert len(ids) == 4 and set(first_run) < set(ids)
    assert_once(ids)
    texts = [Post.from_bytes(v).text for _, v in read_topic(infra.bootstrap_servers, topics.posts_raw)]
    assert any(t.startswith("Acme Robotics inför fyradagarsvecka\n\nPersonalen jublar & facket är positivt")
               for t in texts)


async def test_atom_feed_errors_back_off_then_recover(settings, infra, topics):
    with FeedServer((FEEDS / "atom_latin1.xml").read_bytes(), content_type="application/atom+xml") as srv:
        srv.fail_next = 2
        src = RssSource(type="rss", url=f"{srv.base}/feed.atom", interval="100ms", allow_private_network=True)
        async with service(settings, RssConnector(src, "union-blog")) as (runner, cursors, metrics):
            await eventually(lambda: metrics.value("lyssna_ingest_connector_last_success_timestamp_seconds",
                                                   connector="union-blog") > 0, what="a success after the errors")
            assert metrics.value("lyssna_ingest_connector_errors_total", connector="union-blog") == 2
            assert received(metrics, "rss") == 2
        assert [r.status for r in srv.requests[:3]] == [503, 503, 200]
    posts = [Post.from_bytes(v) for _, v in read_topic(infra.bootstrap_servers, topics.posts_raw)]
    assert sorted(p.text.split("\n")[0] for p in posts) == [
        "Fjällhem: så mår personalen efter flytten", "Lönesamtal på Kvarnby Bank – medlemmarna missnöjda"]


# ------------------------------------------------------------------ Mastodon

@pytest.mark.parametrize("timeline", [{"hashtag": "arbetsmiljö"}, {"account": "lena"}])
async def test_mastodon_pages_forward_and_resumes_from_since_id(settings, infra, topics, timeline):
    statuses = load_statuses()
    newest = max(s["id"] for s in statuses)
    with MastodonServer(statuses) as srv:
        src = MastodonSource(type="mastodon", instance=srv.base, interval="200ms", allow_private_network=True,
                             **timeline)

        async with service(settings, MastodonConnector(src, "masto")) as (runner, cursors, metrics):
            key = runner.connectors[0].cursor_key
            await eventually(lambda: cursors.get(key), what="a stored since_id")
            assert await cursors.get(key) == newest
        first_run = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
        # Five statuses: one is media only; the boost is ingested as the boosted status.
        assert len(first_run) == 4
        assert "mastodon:https://acme.example.com/users/acmerobotics/statuses/777" in first_run

        # While stopped, 45 statuses arrive: more than one page (40) to catch up on.
        srv.statuses += [make_status(statuses[0], 113200000000000006 + i, f"Nytt inlägg {i} om Nordvik")
                         for i in range(45)]
        before = len(srv.requests)
        async with service(settings, MastodonConnector(src, "masto")) as (runner, cursors, metrics):
            await eventually(lambda: received(metrics, "mastodon") == 45, what="the 45 new statuses")
            await eventually(lambda: cursor_is(cursors, key, "113200000000000050"), what="cursor at the newest")
            assert received(metrics, "mastodon") == 45   # nothing of the first run was re-read
        timeline_calls = [r for r in srv.requests[before:] if r.path != "/api/v1/accounts/lookup"]
        assert timeline_calls[0].query["min_id"] == [newest]
        assert timeline_calls[1].query["min_id"] == ["113200000000000045"]  # Link rel="prev"

    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert len(ids) == 49
    assert_once(ids)


# ------------------------------------------------------------------ Bluesky (Jetstream)

async def test_jetstream_resumes_from_its_time_us_cursor(settings, infra, topics):
    events = load_jetstream_events()
    last = str(events[-1]["time_us"])
    async with JetstreamServer(events) as js:
        src = BlueskySource(type="bluesky", url=js.url)
        async with service(settings, BlueskyConnector(src, "bsky", max_wait_s=0.1)) as (runner, cursors, metrics):
            key = runner.connectors[0].cursor_key
            await eventually(lambda: cursor_is(cursors, key, last), what="cursor at the last event")
            assert received(metrics, "bluesky") == 3
        assert js.connections[0]["wantedCollections"] == ["app.bsky.feed.post"]
        assert "cursor" not in js.connections[0]

        js.append([post_event(1746435000002000, "3lnewpost0001", "Acme Robotics höjer lönerna för alla"),
                   post_event(1746435000003000, "3lnewpost0002", "Nordvik Energi anställer 50 montörer")])
        async with service(settings, BlueskyConnector(src, "bsky", max_wait_s=0.1)) as (runner, cursors, metrics):
            await eventually(lambda: cursor_is(cursors, key, "1746435000003000"), what="the new events")
            assert received(metrics, "bluesky") == 2
        assert js.connections[1]["cursor"] == [last]

    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert len(ids) == 5 and "at://did:plc:testauthor0000000000000/app.bsky.feed.post/3lnewpost0002" in ids
    assert_once(ids)


async def test_jetstream_dropped_connection_reconnects_with_cursor(settings, infra, topics):
    events = load_jetstream_events()
    async with JetstreamServer(events, close_after=3) as js:
        connector = BlueskyConnector(BlueskySource(type="bluesky", url=js.url), "bsky", max_wait_s=0.1)
        connector.retry_base_s = 0.05
        async with service(settings, connector) as (runner, cursors, metrics):
            await eventually(lambda: cursor_is(cursors, connector.cursor_key, str(events[-1]["time_us"])),
                             what="all events across reconnects")
            assert metrics.value("lyssna_ingest_connector_errors_total", connector="bsky") >= 1
        cursors_used = [c.get("cursor", [None])[0] for c in js.connections]
        assert cursors_used[:3] == [None, str(events[2]["time_us"]), str(events[4]["time_us"])]
    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert len(ids) == 3
    assert_once(ids)


# ------------------------------------------------------------------ JSONL replay

async def test_jsonl_replay_resumes_after_the_last_acknowledged_line(settings, infra, topics, tmp_path):
    path = tmp_path / "replay.jsonl"
    shutil.copy(FEEDS / "replay_posts.jsonl", path)

    async with service(settings, JsonlConnector(path, "demo")) as (runner, cursors, metrics):
        await runner.wait()
    assert sorted(await atopic_ids(infra.bootstrap_servers, topics.posts_raw)) == [
        "replay-001", "replay-002", "replay-003", "replay-006", "replay-007"]
    dead = [DeadLetter.from_bytes(v) for _, v in read_topic(infra.bootstrap_servers, topics.deadletter)]
    assert sorted(d.reason.split(":")[0] for d in dead) == ["replay.jsonl line 4", "replay.jsonl line 5"]
    # With pseudonymous authors (the default) a source's raw record, which may name
    # people anywhere in it, is not copied into the dead letter: the reason says which line.
    assert all(d.service == "ingest" and d.topic == "connector:demo" and d.payload == "" for d in dead)

    with path.open("a", encoding="utf-8") as f:
        for i in (8, 9):
            f.write(json.dumps({"id": f"replay-00{i}", "text": f"Kvarnby Bank nyhet {i}"}) + "\n")
    async with service(settings, JsonlConnector(path, "demo")) as (runner, cursors, metrics):
        await runner.wait()
        assert received(metrics, "file") == 2   # only the appended lines were read

    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert len(ids) == 7 and {"replay-008", "replay-009"} <= set(ids)
    assert_once(ids)
    assert len(read_topic(infra.bootstrap_servers, topics.deadletter)) == 2


# ------------------------------------------------------------------ ids: push clients and connectors

async def test_pushed_ids_never_collide_across_sources_nor_with_connector_posts(settings, infra, topics):
    """Two sources' id "1" are two posts, and a push client that sends a connector's
    own ids (rss:…, at://…) cannot make the connector's posts count as duplicates."""
    body = (FEEDS / "rss_entities.xml").read_bytes()
    events = load_jetstream_events()
    with FeedServer(body) as srv:
        src = RssSource(type="rss", url=f"{srv.base}/arbetsliv/feed.xml", interval="1h",
                        allow_private_network=True)
        rss_ids = [p.id for p in parse_feed(body, feed_url=src.url)]
        bsky_ids = [p.id for p in map(event_to_post, events) if isinstance(p, Post)]
        claims = [{"id": pid, "source": source, "text": "claimed"}
                  for pid in rss_ids + bsky_ids for source in ("rss", "bluesky", "http")]
        async with running_app(settings) as (_, client):
            r = await client.post("/v1/posts", json=[{"id": "1", "source": "crm", "text": "Acme höjer lönerna"},
                                                     {"id": "1", "source": "intranet", "text": "Acme flyttar"}],
                                  headers=AUTH)
            assert [x["status"] for x in r.json()["results"]] == ["accepted", "accepted"]
            r = await client.post("/v1/posts", json=claims, headers=AUTH)
            assert [x["status"] for x in r.json()["results"]] == ["accepted"] * len(claims)

        async with service(settings, RssConnector(src, "hr-news")) as (runner, cursors, metrics):
            await eventually(lambda: handled(metrics, "rss") == 3, what="the feed's posts")
            assert metrics.value("lyssna_ingest_posts_total", source="rss", outcome="accepted") == 3
    async with JetstreamServer(events) as js:
        connector = BlueskyConnector(BlueskySource(type="bluesky", url=js.url), "bsky", max_wait_s=0.1)
        async with service(settings, connector) as (runner, cursors, metrics):
            await eventually(lambda: handled(metrics, "bluesky") == len(bsky_ids), what="the Jetstream posts")
            assert metrics.value("lyssna_ingest_posts_total", source="bluesky", outcome="accepted") == len(bsky_ids)

    ids = await atopic_ids(infra.bootstrap_servers, topics.posts_raw)
    assert_once(ids)
    assert set(rss_ids + bsky_ids) <= set(ids)
    assert len(ids) == 2 + len(claims) + len(rss_ids) + len(bsky_ids)


# ------------------------------------------------------------------ what a source can make a connector do

def approve_only(address: str):
    """An address policy under which ``address`` passes as public (the tests' stand-in for a
    host on the internet); every other address is judged as usual."""
    def policy(addr):
        return None if str(addr) == address else why_not_public(addr)
    return policy


async def test_redirects_are_followed_hop_by_hop_each_checked_at_most_five():
    feed = (200, {"Content-Type": "application/rss+xml"}, (FEEDS / "rss_entities.xml").read_bytes())
    with ScriptedServer({"/admin/feed.xml": feed}, host="127.0.0.2") as inside, ScriptedServer({}) as outside:
        outside.routes.update({
            "/moved": (301, {"Location": "/feed.xml"}, b""),
            "/feed.xml": feed,
            "/to-inside": (302, {"Location": f"{inside.base}/admin/feed.xml"}, b""),
            "/loop": (307, {"Location": "/loop"}, b""),
        })
        policy = FetchPolicy(address_policy=approve_only("127.0.0.1"))

        def rss(path: str, **kw) -> RssConnector:
            return RssConnector(RssSource(type="rss", url=f"{outside.base}{path}", **kw), "feed",
                                policy=None if kw else policy)

        posts, _ = await rss("/moved").fetch({})
        assert len(posts) == 3

        with pytest.raises(SourceError, match=r"'127\.0\.0\.2' resolves to 127\.0\.0\.2, a loopback address"):
            await rss("/to-inside").fetch({})
        assert inside.requests == []                     # refused before connecting

        with pytest.raises(SourceError, match="more than 5 redirects"):
            await rss("/loop").fetch({})
        assert [r.path for r in outside.requests].count("/loop") == 6

        # The operator's say-so for a feed on the private network (and its redirects).
        posts, _ = await rss("/to-inside", allow_private_network=True).fetch({})
        assert len(posts) == 3 and len(inside.requests) == 1

        # Without it, a feed on loopback itself is refused like a webhook would be.
        with pytest.raises(SourceError, match="loopback address"):
            await RssConnector(RssSource(type="rss", url=f"{outside.base}/feed.xml"), "feed").fetch({})


async def test_an_oversized_answer_is_refused_while_it_streams():
    total = 64 * 1024 * 1024
    chunk = b"<!-- padding -->" * 4096                   # 64 KiB
    endless = (200, {"Content-Type": "application/rss+xml"}, (chunk for _ in range(total // len(chunk))))
    declared = (200, {"Content-Type": "application/rss+xml"}, chunk * 32)   # 2 MiB with Content-Length
    with ScriptedServer({"/endless.xml": endless, "/declared.xml": declared}) as srv:
        policy = FetchPolicy(max_bytes=1024 * 1024, allow_private_network=True)
        with pytest.raises(SourceError, match="over the limit of 1048576 bytes"):
            await RssConnector(RssSource(type="rss", url=f"{srv.base}/endless.xml"), "big", policy=policy).fetch({})
        assert srv.sent < total                          # the client stopped reading, it did not buffer it all
        with pytest.raises(SourceError, match="answer of 2097152 bytes is over the limit"):
            await RssConnector(RssSource(type="rss", url=f"{srv.base}/declared.xml"), "big", policy=policy).fetch({})
        masto = MastodonConnector(MastodonSource(type="mastodon", instance=srv.base, hashtag="x"), "m",
                                  policy=policy)
        srv.routes["/api/v1/timelines/tag/x"] = endless
        with pytest.raises(SourceError, match="over the limit"):
            await anext(masto.batches(None))


async def test_a_trickling_answer_is_cut_off_at_the_fetch_deadline():
    """A server that sends a byte every half second never trips httpx's per-read
    timeout; the whole fetch has its own deadline."""
    import time

    def trickle():
        for _ in range(120):  # a minute at this pace
            yield b" "
            time.sleep(0.5)

    with ScriptedServer({"/slow.xml": (200, {"Content-Type": "application/rss+xml"}, trickle())}) as srv:
        policy = FetchPolicy(max_seconds=1.5, allow_private_network=True)
        with pytest.raises(SourceError, match="no complete answer within 1.5 s"):
            await RssConnector(RssSource(type="rss", url=f"{srv.base}/slow.xml"), "slow", policy=policy).fetch({})
        assert srv.sent < 120  # cut off long before the server was done


async def test_an_oversized_jetstream_frame_closes_the_connection():
    big = post_event(1746435000009000, "3lbigframe01", "Acme " * 300_000)   # about 1.5 MB of JSON
    async with JetstreamServer([big]) as js:
        connector = BlueskyConnector(BlueskySource(type="bluesky", url=js.url), "bsky", max_wait_s=0.1)
        batches = connector.batches(None)
        with pytest.raises(SourceError, match="closed the connection"):
            async for batch in batches:
                assert batch.items == []
        assert len(js.connections) == 1


# ------------------------------------------------------------------ post times

async def test_implausible_post_times_become_the_fetch_time_and_are_counted(settings, infra, topics):
    future, old, fine = "2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2026-05-05T10:00:00Z"
    async with running_app(settings) as (app, client):
        r = await client.post("/v1/posts", json=[{"id": "t1", "text": "Acme", "created_at": future},
                                                 {"id": "t2", "text": "Acme", "created_at": old},
                                                 {"id": "t3", "text": "Acme", "created_at": fine}], headers=AUTH)
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
        metrics = app.state.ingest.metrics
        assert metrics.value("lyssna_ingest_created_at_replaced_total", source="http", reason="future") == 1
        assert metrics.value("lyssna_ingest_created_at_replaced_total", source="http", reason="too_old") == 1
    feed = (FEEDS / "rss_entities.xml").read_bytes().replace(
        b"<pubDate>Tue, 05 May 2026 08:15:00 +0200</pubDate>", b"<pubDate>Fri, 01 Jan 2100 08:15:00 +0200</pubDate>")
    assert b"2100" in feed
    with FeedServer(feed) as srv:
        src = RssSource(type="rss", url=f"{srv.base}/feed.xml", interval="1h", allow_private_network=True)
        async with service(settings, RssConnector(src, "hr-news")) as (runner, cursors, metrics):
            await eventually(lambda: handled(metrics, "rss") == 3, what="the feed's posts")
            assert metrics.value("lyssna_ingest_created_at_replaced_total", source="rss", reason="future") == 1

    posts = {p.id: p for p in (Post.from_bytes(v) for _, v in read_topic(infra.bootstrap_servers, topics.posts_raw))}
    for pid in ("http/http/t1", "http/http/t2"):
        assert posts[pid].created_at == posts[pid].fetched_at
    assert posts["http/http/t3"].created_at.isoformat() == "2026-05-05T10:00:00+00:00"
    from_feed = [p for p in posts.values() if p.source == "rss"]
    replaced = [p for p in from_feed if p.created_at == p.fetched_at]
    assert len(from_feed) == 3 and len(replaced) == 1 and replaced[0].text.startswith("Nordvik Energi varslar")
    assert sorted(str(p.created_at) for p in from_feed if p not in replaced) == ["2026-05-04 14:00:00+00:00", "None"]
