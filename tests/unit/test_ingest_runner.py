"""The runner's ordering rules, with an in-memory pipeline and cursor store: a
cursor is stored only after its batch was ingested, a batch is held (not
dropped) while Kafka is down, rejected items go to the dead letter, and a
failing source is retried from its stored cursor. Also the JSONL replay's
position and pacing, on a temporary file."""

import asyncio
import json

import pytest

from lyssna.common.contracts import Post
from lyssna.ingest.connectors.base import Batch, Connector, SourceError
from lyssna.ingest.connectors.jsonl import JsonlConnector
from lyssna.ingest.metrics import IngestMetrics
from lyssna.ingest.normalize import Normalized, Rejection, from_post
from lyssna.ingest.pipeline import ACCEPTED, REJECTED, ItemResult, Unavailable
from lyssna.ingest.runner import ConnectorRunner


class MemoryCursors:
    def __init__(self, initial=None):
        self.values = dict(initial or {})
        self.log: list[tuple[str, str]] = []

    async def get(self, key):
        return self.values.get(key)

    async def set(self, key, value):
        self.values[key] = value
        self.log.append((key, value))


class FakePipeline:
    """Ingests by appending to ``produced``; raises Unavailable ``down`` times first."""

    def __init__(self, cursors: MemoryCursors, down: int = 0):
        self.cursors = cursors
        self.down = down
        self.produced: list[str] = []
        self.dead: list[str] = []
        self.cursor_when_ingested: list[dict] = []

    async def ingest(self, items, *, channel):
        self.cursor_when_ingested.append(dict(self.cursors.values))
        if self.down:
            self.down -= 1
            raise Unavailable("kafka", "broker down", [])
        out = []
        for i, item in enumerate(items):
            if isinstance(item, Rejection):
                out.append(ItemResult(i, None, REJECTED, item.reason))
            else:
                self.produced.append(item.post.id)
                out.append(ItemResult(i, item.post.id, ACCEPTED))
        return out

    async def dead_letter(self, origin, rejections):
        self.dead.extend(r.reason for r in rejections)


class ListConnector(Connector):
    type = "file"

    def __init__(self, batches, fail_after=None):
        super().__init__("test", "list")
        self._batches = batches
        self.fail_after = fail_after
        self.started_with: list = []
        self.retry_base_s = 0.0

    async def batches(self, cursor):
        self.started_with.append(cursor)
        start = int(cursor) if cursor else 0
        for n, batch in enumerate(self._batches[start:], start=start):
            if self.fail_after is not None and n == self.fail_after:
                self.fail_after = None
                raise SourceError("connection reset")
            yield batch


def post(i: int) -> Normalized:
    return from_post(Post(id=f"p{i}", source="file", text=f"text {i}"))


async def no_sleep(_s):
    await asyncio.sleep(0)


def runner_for(connector, pipeline, cursors):
    return ConnectorRunner([connector], pipeline, cursors, IngestMetrics(), sleep=no_sleep)


async def test_cursor_is_stored_only_after_the_batch_was_ingested():
    cursors = MemoryCursors()
    pipeline = FakePipeline(cursors)
    c = ListConnector([Batch([post(0), post(1)], "1"), Batch([post(2)], "2"), Batch([], "3")])
    r = runner_for(c, pipeline, cursors)
    r.start()
    await r.wait()
    assert pipeline.produced == ["p0", "p1", "p2"]
    # While batch n was ingested the stored cursor was still that of batch n-1.
    assert [snap.get(c.cursor_key) for snap in pipeline.cursor_when_ingested] == [None, "1"]
    assert [v for _, v in cursors.log] == ["1", "2", "3"]
    assert r.finished == {"test"}


async def test_batch_is_held_while_kafka_is_down_never_dropped():
    cursors = MemoryCursors()
    pipeline = FakePipeline(cursors, down=3)
    c = ListConnector([Batch([post(0)], "1")])
    r = runner_for(c, pipeline, cursors)
    r.start()
    await r.wait()
    assert pipeline.produced == ["p0"]
    assert len(pipeline.cursor_when_ingested) == 4   # three refusals, then accepted
    assert cursors.values[c.cursor_key] == "1"


async def test_rejections_are_dead_lettered_before_the_cursor_moves():
    cursors = MemoryCursors()
    pipeline = FakePipeline(cursors)
    c = ListConnector([Batch([post(0), Rejection("line 2: text: required", payload="{}")], "1")])
    r = runner_for(c, pipeline, cursors)
    r.start()
    await r.wait()
    assert pipeline.dead == ["line 2: text: required"]
    assert cursors.values[c.cursor_key] == "1"


async def test_failing_source_restarts_from_its_stored_cursor():
    cursors = MemoryCursors()
    pipeline = FakePipeline(cursors)
    metrics = IngestMetrics()
    c = ListConnector([Batch([post(0)], "1"), Batch([post(1)], "2"), Batch([post(2)], "3")], fail_after=2)
    r = ConnectorRunner([c], pipeline, cursors, metrics, sleep=no_sleep)
    r.start()
    await r.wait()
    assert c.started_with == [None, "2"]
    assert pipeline.produced == ["p0", "p1", "p2"]
    assert metrics.value("lyssna_ingest_connector_errors_total", connector="test") == 1
    assert metrics.value("lyssna_ingest_connector_last_success_timestamp_seconds", connector="test") > 0


# ------------------------------------------------------------------ JSONL replay

async def collect(connector, cursor=None):
    out = []
    async for batch in connector.batches(cursor):
        out.append(batch)
    return out


def write_lines(path, lines, trailing_newline=True):
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_text(text, encoding="utf-8")


async def test_jsonl_cursor_is_the_offset_after_each_batch(tmp_path):
    f = tmp_path / "posts.jsonl"
    write_lines(f, [json.dumps({"id": f"r{i}", "text": f"t{i}"}) for i in range(5)])
    c = JsonlConnector(f, "replay", batch_size=2)
    batches = await collect(c)
    assert [[n.post.id for n in b.items] for b in batches] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    last = json.loads(batches[-1].cursor)
    assert last == {"offset": f.stat().st_size, "line": 5}
    # Resuming from the middle reads only what follows.
    rest = await collect(c, batches[0].cursor)
    assert [n.post.id for b in rest for n in b.items] == ["r2", "r3", "r4"]
    # At the end: nothing again, and the cursor stays.
    again = await collect(c, batches[-1].cursor)
    assert [b.items for b in again] == [[]] and again[0].cursor == batches[-1].cursor


async def test_jsonl_bad_lines_become_rejections_with_line_numbers(tmp_path):
    f = tmp_path / "posts.jsonl"
    write_lines(f, ['{"id": "a", "text": "ok"}', '{"id": "b"', "", '{"id": "c"}', "[1]"])
    (batch,) = await collect(JsonlConnector(f, "replay"))
    kinds = [type(i).__name__ for i in batch.items]
    assert kinds == ["Normalized", "Rejection", "Rejection", "Rejection"]
    reasons = [i.reason for i in batch.items[1:]]
    assert reasons[0].startswith("posts.jsonl line 2: invalid JSON")
    assert reasons[1] == "posts.jsonl line 4: text: required"
    assert reasons[2].startswith("posts.jsonl line 5: item: must be a JSON object")
    assert batch.items[1].payload == '{"id": "b"\n'


async def test_jsonl_unfinished_last_line_is_left_for_later(tmp_path):
    f = tmp_path / "posts.jsonl"
    f.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "te', encoding="utf-8")
    (batch,) = await collect(JsonlConnector(f, "replay"))
    assert len(batch.items) == 1
    assert json.loads(batch.cursor) == {"offset": len('{"id": "a", "text": "ok"}\n'), "line": 1}
    # Completed without a final newline: now it is read.
    f.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": "done"}', encoding="utf-8")
    (batch,) = await collect(JsonlConnector(f, "replay"), batch.cursor)
    assert [n.post.id for n in batch.items] == ["b"]


async def test_jsonl_an_over_long_line_is_skipped_in_pieces_and_dead_lettered(tmp_path):
    from lyssna.ingest.connectors.jsonl import MAX_LINE_BYTES

    f = tmp_path / "posts.jsonl"
    huge = '{"id": "h", "text": "' + "A" * (3 * MAX_LINE_BYTES) + '"}'
    write_lines(f, ['{"id": "a", "text": "ok"}', huge, '{"id": "c", "text": "after"}'])
    (batch,) = await collect(JsonlConnector(f, "replay"))
    assert [type(i).__name__ for i in batch.items] == ["Normalized", "Rejection", "Normalized"]
    assert batch.items[1].reason.startswith(f"posts.jsonl line 2: line longer than {MAX_LINE_BYTES} bytes")
    assert len(batch.items[1].payload) < 2000  # only the start is kept for the dead letter
    assert json.loads(batch.cursor) == {"offset": f.stat().st_size, "line": 3}


async def test_jsonl_speedup_replays_the_gaps_faster(tmp_path):
    f = tmp_path / "posts.jsonl"
    times = ["2026-05-01T08:00:00Z", "2026-05-01T08:00:10Z", "2026-05-01T08:00:10Z", "2026-05-01T08:01:00Z"]
    write_lines(f, [json.dumps({"id": f"s{i}", "text": "t", "created_at": t}) for i, t in enumerate(times)])
    now = [1000.0]
    slept: list[float] = []

    async def fake_sleep(s):
        slept.append(s)
        now[0] += s

    c = JsonlConnector(f, "replay", speedup=10, clock=lambda: now[0], sleep=fake_sleep)
    batches = await collect(c)
    assert slept == [pytest.approx(1.0), pytest.approx(5.0)]  # 10 s and 50 s gaps, 10x faster
    # What was due is handed over before each wait, so it is not held back by the pause.
    assert [[n.post.id for n in b.items] for b in batches] == [["s0"], ["s1", "s2"], ["s3"]]
    assert all(isinstance(n, Normalized) for b in batches for n in b.items)


async def test_ids_held_by_another_request_are_retried_not_dead_lettered():
    cursors = MemoryCursors()

    class Busy(FakePipeline):
        rounds = 0

        async def ingest(self, items, *, channel):
            self.rounds += 1
            if self.rounds <= 3:
                return [ItemResult(i, it.id, REJECTED, "in flight", retryable=True) for i, it in enumerate(items)]
            return await super().ingest(items, channel=channel)

    pipeline = Busy(cursors)
    c = ListConnector([Batch([post(0)], "1")])
    r = runner_for(c, pipeline, cursors)
    r.start()
    await r.wait()
    assert pipeline.produced == ["p0"] and pipeline.dead == []
    assert cursors.values[c.cursor_key] == "1"


async def test_stop_lets_a_delivery_in_progress_finish_and_store_its_cursor():
    cursors = MemoryCursors()
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(FakePipeline):
        async def ingest(self, items, *, channel):
            entered.set()
            await release.wait()   # Kafka has not acknowledged yet
            return await super().ingest(items, channel=channel)

    pipeline = Slow(cursors)
    c = ListConnector([Batch([post(0)], "1"), Batch([post(1)], "2")])
    r = runner_for(c, pipeline, cursors)
    r.start()
    await entered.wait()
    stopping = asyncio.create_task(r.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()          # waiting for the delivery, not cutting it off
    release.set()
    await stopping
    assert pipeline.produced == ["p0"]
    assert cursors.values[c.cursor_key] == "1"   # the second batch was never read


def test_every_configured_source_type_has_its_registered_connector():
    import typing

    from lyssna.common.config import SourceConfig
    from lyssna.ingest.connectors import CONNECTORS

    models = typing.get_args(typing.get_args(SourceConfig)[0])
    by_type = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in models}
    assert {t: c.source_model for t, c in CONNECTORS.items()} == by_type


async def test_connectors_are_built_by_their_source_type(tmp_path):
    from lyssna.common.config import load_settings
    from lyssna.ingest.connectors.bluesky import BlueskyConnector
    from lyssna.ingest.connectors.fetch import FetchPolicy
    from lyssna.ingest.connectors.jsonl import JsonlConnector
    from lyssna.ingest.connectors.mastodon import MastodonConnector
    from lyssna.ingest.connectors.rss import RssConnector
    from lyssna.ingest.runner import build_connectors

    config = tmp_path / "lyssna.yaml"
    config.write_text(f"""
ingest: {{max_feed_bytes: 123456}}
sources:
  - {{type: rss, url: "https://feeds.example/hr.xml"}}
  - {{type: mastodon, instance: "https://mastodon.example", hashtag: acme}}
  - {{type: bluesky, url: "wss://jetstream.example/subscribe"}}
  - {{type: file, path: "{tmp_path / 'posts.jsonl'}"}}
""")
    connectors = build_connectors(load_settings(config, env={}))
    try:
        assert [type(c) for c in connectors] == [RssConnector, MastodonConnector, BlueskyConnector, JsonlConnector]
        assert connectors[0].policy == FetchPolicy(max_bytes=123456, allow_private_network=False)
        assert connectors[1].policy.max_bytes == 123456
    finally:
        for c in connectors:
            await c.aclose()
