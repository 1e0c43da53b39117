"""Connectors, once: ingest replicas share the configured sources through Kafka's
group membership, so a feed is polled by one replica at a time; ``kill -9`` of
that replica hands the feed to another, which continues from the stored cursor.
Cursor writes are fenced, so a replica that lost a source cannot move its
cursor back. Real Kafka, Redis and ingest processes; the feed is served on
127.0.0.1 and every request is attributed to the replica process that sent it."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from tests.helpers.kafka_io import ServiceProcess, free_port, wait_for
from tests.helpers.replicas import group_members
from tests.helpers.ingest_support import API_KEY, FeedServer, atopic_ids, eventually, rss, topic_ids

from lyssna.common.config import RssSource
from lyssna.ingest.app import build_state
from lyssna.ingest.assignment import Fenced, FencedCursorStore, group_name
from lyssna.ingest.connectors.rss import RssConnector, entry_id
from lyssna.ingest.runner import ConnectorRunner

pytestmark = pytest.mark.integration


def entry_ids(url: str, n: int) -> list[str]:
    return [entry_id(url, {"id": f"acme-entry-{k}"}) for k in range(1, n + 1)]


def socket_owner(client: tuple[str, int], server_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the TCP connection from ``client`` to ``server_port``:
    the socket's inode from /proc/net/tcp, then the process with that inode open."""
    local = f"0100007F:{client[1]:04X}"
    remote = f"0100007F:{server_port:04X}"
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


@dataclass
class Fetch:
    at: float                    # time.monotonic() when the request arrived
    pid: int | None              # the replica process that sent it
    if_none_match: str | None    # the validator it sent: the cursor it polls from


class AttributedFeedServer(FeedServer):
    """The feed, recording which replica process sent each request."""

    def __init__(self, body: bytes):
        super().__init__(body)
        self.pids: list[int] = []
        self.fetches: list[Fetch] = []

    def handle(self, seen):
        pid = socket_owner(seen.client, self.httpd.server_address[1], self.pids)
        self.fetches.append(Fetch(time.monotonic(), pid, seen.headers.get("if-none-match")))
        return super().handle(seen)


def test_a_source_is_polled_by_one_replica_and_taken_over_after_kill_9(infra, topics, redis_prefix, tmp_path):
    bootstrap = infra.bootstrap_servers
    with AttributedFeedServer(rss(2)) as srv:
        url = f"{srv.base}/acme/feed.xml"
        ids = entry_ids(url, 7)
        config = tmp_path / "lyssna.yaml"
        config.write_text(
            "ingest:\n  connectors_session_timeout: 6s\n"
            f"sources:\n  - type: rss\n    name: shared-feed\n    url: {url}\n    interval: 2s\n"
            "    allow_private_network: true\n", encoding="utf-8")
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": infra.redis_url, "LYSSNA_REDIS_PREFIX": redis_prefix,
               "LYSSNA_API_KEY": API_KEY, **topics.as_env()}
        replicas = []
        for _ in range(2):
            port = free_port()
            replicas.append(ServiceProcess("ingest", {**env, "LYSSNA_INGEST_PORT": str(port)}, port=port,
                                           log_dir=tmp_path, config=config))
        try:
            for r in replicas:
                r.start()
            srv.pids = [r.proc.pid for r in replicas]
            for r in replicas:
                r.wait_ready()

            def on_topic() -> Counter:
                return Counter(topic_ids(bootstrap, topics.posts_raw))

            def the_poller() -> tuple[ServiceProcess, ServiceProcess]:
                """Once both replicas are in the settled group, one polls: (it, the other)."""
                wait_for(lambda: group_members(bootstrap, group_name(redis_prefix)) == 2,
                         what="a stable group of two")
                settled = len(srv.fetches)
                wait_for(lambda: len(srv.fetches) >= settled + 3, what="three polls")
                polled_by = {f.pid for f in srv.fetches[settled:]}
                assert len(polled_by) == 1 and None not in polled_by, f"polled by {polled_by} of {srv.pids}"
                owner = next(r for r in replicas if r.proc.pid in polled_by)
                return owner, next(r for r in replicas if r is not owner)

            owner, other = the_poller()
            wait_for(lambda: set(ids[:2]) <= set(on_topic()), what="entries 1-2 on the topic")

            # Entry 3 is taken in by the owner: it polls from the new validator once
            # the batch's cursor is stored (the runner stores it before the next poll).
            srv.set_body(rss(3))
            stored = srv.etag
            wait_for(lambda: any(f.if_none_match == stored for f in srv.fetches), what="the owner's cursor at entry 3")
            # Entry 4 appears as the owner dies, between two of its polls.
            srv.set_body(rss(4))
            killed_at = time.monotonic()
            owner.kill()
            wait_for(lambda: ids[3] in on_topic(), timeout=120, what="entry 4 from the other replica")
            taken = next(f for f in srv.fetches if f.at > killed_at)
            print(f"\nconnector handover after kill -9: {taken.at - killed_at:.2f}s "
                  f"(session timeout 6s, poll interval 2s)")
            assert taken.pid == other.proc.pid
            assert taken.if_none_match == stored, "the new owner must continue from the stored cursor"
            # Entry 5 after the takeover.
            srv.set_body(rss(5))
            wait_for(lambda: ids[4] in on_topic(), what="entry 5")
            assert {f.pid for f in srv.fetches if f.at > killed_at} == {other.proc.pid}

            # The killed replica comes back and joins; then whichever polls is stopped
            # cleanly (SIGTERM): it leaves the group, and the other goes on from its cursor.
            owner.start()
            srv.pids[:] = [r.proc.pid for r in replicas]
            owner.wait_ready()
            owner, other = the_poller()
            srv.set_body(rss(6))
            stored = srv.etag
            wait_for(lambda: any(f.if_none_match == stored and f.pid == owner.proc.pid for f in srv.fetches),
                     what="the owner's cursor at entry 6")
            srv.set_body(rss(7))
            stopped_at = time.monotonic()
            owner.stop()
            wait_for(lambda: ids[6] in on_topic(), what="entry 7 from the other replica")
            taken = next(f for f in srv.fetches if f.at > stopped_at and f.pid == other.proc.pid)
            print(f"connector handover after SIGTERM: {taken.at - stopped_at:.2f}s")
            assert taken.if_none_match == stored
            assert on_topic() == Counter(ids), "every entry exactly once"
        finally:
            for r in replicas:
                r.stop()


async def test_a_stale_owner_cannot_overwrite_a_newer_cursor(settings, infra, topics):
    """The token, on real Redis: a replica that claimed the source before another
    (Kafka dropped it, it does not know yet) has its cursor writes refused, even
    right after it ingested a batch, and the newer owner's cursor stays."""
    prefix = settings.redis.key_prefix
    with FeedServer(rss(2)) as srv:
        url = f"{srv.base}/acme/feed.xml"
        src = RssSource(type="rss", url=url, interval="200ms", allow_private_network=True)
        state = build_state(settings, delivery_timeout_s=10)
        stale = FencedCursorStore(state.redis, prefix)
        paused: list[float] = []

        async def sleep(delay: float) -> None:
            paused.append(delay)
            await asyncio.sleep(delay)

        connector = RssConnector(src, "stale")
        runner = ConnectorRunner([connector], state.pipeline, stale, state.metrics, sleep=sleep)
        runner.fenced_retry_s = 3600.0  # the pause of a fenced connector, told apart from other sleeps
        newer_redis = aioredis.Redis.from_url(infra.redis_url)
        newer = FencedCursorStore(newer_redis, prefix)
        runner.start()
        try:
            first = srv.etag
            await eventually(lambda: any(s.headers.get("if-none-match") == first for s in srv.requests),
                             what="the stale owner's cursor stored")
            # The source moves on: the new owner claims it and stores its own cursor.
            await newer.claim(connector.cursor_key)
            await newer.set(connector.cursor_key, '{"etag": "newer-owner"}')
            srv.set_body(rss(3))
            await eventually(lambda: 3600.0 in paused, what="the stale owner fenced")
            assert await newer.get(connector.cursor_key) == '{"etag": "newer-owner"}'
            with pytest.raises(Fenced):
                await stale.set(connector.cursor_key, "late")
            # What it ingested before it was fenced is on the topic, once.
            on_topic = Counter(await atopic_ids(settings.kafka.bootstrap_servers, topics.posts_raw))
            assert on_topic == Counter(entry_ids(url, 3))
        finally:
            await runner.stop()
            await state.producer.close()
            await state.redis.aclose()
            await newer_redis.aclose()
