"""The classify worker in this process, against the real broker and the real model,
with one fault injected at a time: Kafka refusing its output, a post whose handling
never ends, a post whose handling raises. No post may be skipped, and the stream
must go on (or the worker crash, to restart from the last committed offset)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from lyssna.classify.classifier import Classifier
from lyssna.classify.service import ClassifyService
from lyssna.common.config import load_settings
from lyssna.common.contracts import ClassifiedPost, DeadLetter, Post
from tests.helpers.kafka_io import eventually, free_port, produce, read_all

pytestmark = pytest.mark.integration

TEXTS = [
    "Vi söker nya kollegor till Acmes lager i Borås! Ansök via länken 👉 #jobb",
    "Sjukt stressigt på Acme just nu, tredje helgen i rad med övertid.",
    "Acme svarade direkt på Instagram när jag frågade om leveransen 👍",
    "Regn hela veckan i Göteborg, typiskt november.",
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """One real model for the module: loading it is the slow part."""
    # scope "all": without a watchlist, "mentions" would skip the transformer these
    # tests are about.
    settings = load_settings(None, env={})
    return Classifier.from_settings(settings.model_copy(update={
        "classify": settings.classify.model_copy(update={"scope": "all"})}))


def posts(n: int, prefix: str, marked: dict[int, str] | None = None) -> list[Post]:
    marked = marked or {}
    return [Post(id=f"{prefix}-{i}", source="test", text=marked.get(i, TEXTS[i % len(TEXTS)] + f" ({i})"))
            for i in range(n)]


def configured(settings, unique_id, **classify):
    """The test's settings with its own consumer group and small batches."""
    overrides = {"app_id": f"classify-test-{unique_id}", "port": free_port(), "batch_size": 8,
                 "batch_within": "100ms", "produce_backoff": "100ms", **classify}
    section = settings.classify.model_validate({**settings.classify.model_dump(), **overrides})
    return settings.model_copy(update={"classify": section})


async def all_committed(infra, settings, records: int) -> None:
    """Wait until the worker's group committed ``records`` offsets of posts.raw (every
    record the test sent to its own topic): nothing is left to read after a restart."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    await admin.start()
    try:
        async def committed():
            offsets = await admin.list_consumer_group_offsets(settings.classify.app_id)
            return sum(max(meta.offset, 0) for tp, meta in offsets.items()
                       if tp.topic == settings.kafka.topics.posts_raw) == records
        await eventually(committed, timeout=180, interval=0.5, what=f"{records} raw records committed")
    finally:
        await admin.close()


async def send(infra, topic: str, batch: list[Post]) -> None:
    await asyncio.to_thread(produce, infra.bootstrap_servers, topic, [(p.id.encode(), p.to_bytes()) for p in batch])


async def classified_ids(infra, topic: str) -> set[str]:
    return {ClassifiedPost.from_bytes(v).id for v in await asyncio.to_thread(read_all, infra.bootstrap_servers, topic)}


async def dead_letters(infra, topic: str) -> dict[str | None, DeadLetter]:
    return {d.key: d for d in map(DeadLetter.from_bytes,
                                  await asyncio.to_thread(read_all, infra.bootstrap_servers, topic))}


class RefusingSends:
    """Kafka refusing the worker's output: ``producer.send`` raises, as aiokafka's
    producer does when it cannot take a record, for its first ``n`` calls."""

    def __init__(self, producer, n: int):
        from aiokafka.errors import KafkaTimeoutError

        self.error, self.real, self.left = KafkaTimeoutError, producer.send, n
        producer.send = self

    async def __call__(self, *args, **kwargs):
        if self.left > 0:
            self.left -= 1
            raise self.error("injected: the broker refused the record")
        return await self.real(*args, **kwargs)


async def test_refused_output_is_sent_again_and_no_post_is_lost(infra, settings, unique_id, classifier):
    cfg = configured(settings, unique_id)
    service = ClassifyService(cfg, classifier)
    await service.start(serve_http=False)
    refusing = RefusingSends(service.producer, 5)
    try:
        batch = posts(24, "r")
        await send(infra, cfg.kafka.topics.posts_raw, batch)
        await all_committed(infra, cfg, len(batch))
        assert {p.id for p in batch} <= await classified_ids(infra, cfg.kafka.topics.posts_classified)
        assert refusing.left == 0, "the injected failures were not all hit"
        assert not service.tasks["stream"].done()  # a passing refusal is retried, not a crash
    finally:
        await service.stop()


async def test_output_refused_for_good_crashes_without_commit_and_a_restart_classifies_all(
        infra, settings, unique_id, classifier):
    cfg = configured(settings, unique_id, produce_attempts=3)
    service = ClassifyService(cfg, classifier)
    await service.start()
    RefusingSends(service.producer, 10**9)
    batch = posts(20, "c")
    try:
        await send(infra, cfg.kafka.topics.posts_raw, batch)
        await asyncio.wait_for(service.wait(), timeout=180)  # the process would exit 1 here
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{cfg.classify.port}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["stream"] == "stopped"
    finally:
        await service.stop()
    restarted = ClassifyService(cfg, classifier)
    await restarted.start(serve_http=False)
    try:
        await all_committed(infra, cfg, len(batch))
        assert {p.id for p in batch} <= await classified_ids(infra, cfg.kafka.topics.posts_classified)
    finally:
        await restarted.stop()


class Sabotaged:
    """The real classifier, except for posts carrying a marker: one whose handling
    does not end until released (as a pathological post whose patterns run for
    minutes would), one whose handling raises with the post's text in the message."""

    HANG, RAISE = "HANG-MARKER", "RAISE-MARKER"

    def __init__(self, real: Classifier):
        self.real, self.model_info, self.release = real, real.model_info, threading.Event()

    def warm_up(self) -> None:
        self.real.warm_up()

    def __getattr__(self, name: str):
        # Everything else (encoder, scope, the encoded count) is the real classifier's.
        return getattr(self.real, name)

    def classify_posts(self, posts, **kwargs):
        texts = [p.text for p in posts]
        if any(self.HANG in t for t in texts):
            self.release.wait()
        if any(self.RAISE in t for t in texts):
            raise ValueError(next(t for t in texts if self.RAISE in t))
        return self.real.classify_posts(posts, **kwargs)


async def test_a_post_over_its_time_budget_or_failing_is_dead_lettered_and_the_stream_goes_on(
        infra, settings, unique_id, classifier):
    # A batch over its budget only goes post by post; the post budget is ample for a normal post.
    cfg = configured(settings, unique_id, batch_budget="2s", post_budget="15s")
    sabotaged = Sabotaged(classifier)
    service = ClassifyService(cfg, sabotaged)
    await service.start()
    hang_text = f"Acme {Sabotaged.HANG} lönesamtal hos Acme, hemligt"
    raise_text = f"Acme {Sabotaged.RAISE} hemlig uppsägning hos Acme"
    first = posts(12, "b", marked={3: hang_text, 9: raise_text})
    try:
        await send(infra, cfg.kafka.topics.posts_raw, first)
        later = posts(6, "after")  # queued behind them: the stream must go on
        await send(infra, cfg.kafka.topics.posts_raw, later)
        await all_committed(infra, cfg, len(first + later))
        want = {p.id for p in first + later} - {"b-3", "b-9"}
        assert want <= await classified_ids(infra, cfg.kafka.topics.posts_classified)
        dead = await dead_letters(infra, cfg.kafka.topics.deadletter)
        assert set(dead) == {"b-3", "b-9"}
        assert dead["b-3"].reason == "exceeded the time budget of 15 s"
        assert dead["b-9"].reason == "classification failed: ValueError"
        assert dead["b-3"].service == "classify" and dead["b-3"].topic == cfg.kafka.topics.posts_raw
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{cfg.classify.port}/readyz")
            metrics = (await http.get(f"http://127.0.0.1:{cfg.classify.port}/metrics")).text
        assert ready.status_code == 200 and ready.json()["checks"]["stream"] == "ok"
        # At least the hanging batch's thread and the hanging post's run on in the background.
        assert service.metrics.value("lyssna_classify_overrunning_threads") >= 2
        assert "lyssna_classify_budget_overruns_total" in metrics
    finally:
        sabotaged.release.set()
        await service.stop()
