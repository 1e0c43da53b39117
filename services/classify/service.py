"""The classify worker: a consumer-group member from ``posts.raw`` to ``posts.classified``.

Records arrive in batches (:class:`lyssna.common.batch_consumer.BatchConsumer`)
so the transformer sees batches. A batch's offsets are committed only after
Kafka acknowledged every classified record (and every dead letter), so a
committed offset always means "produced": a worker killed at any point re-reads,
never skips. Duplicates after a crash carry the same post id and are absorbed
downstream.

A batch whose output Kafka does not take after every retry ends the loop
without committing it: the worker stops taking batches and the process
crashes, to restart from the last committed offset.

Each batch is classified in a thread within a time budget; one that overruns
or fails is classified post by post, each post within its own budget, and a
post that still overruns or fails goes to the dead letter with the reason.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError

from lyssna.common.batch_consumer import BatchConsumer
from lyssna.common.config import Settings
from lyssna.common.contracts import ClassifiedPost, DeadLetter, Post
from lyssna.common.health import health_router
from lyssna.common.kafka_admin import ensure_topics
from lyssna.common.logs import setup_logging
from lyssna.common.runtime import EmbeddedServer, StopDeadline, first_crash, run_until_signal, watch_lag

from .classifier import Classifier
from .metrics import SERVICE, ClassifyMetrics

log = logging.getLogger("lyssna.classify")

def parse_post(value: bytes | None) -> Post | str:
    """The post, or why it cannot be classified."""
    if not value:
        return "empty record"
    try:
        return Post.from_bytes(value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return f"not a {Post.model_fields['schema_'].default} record: {where}: {first['msg']}"
    except UnicodeDecodeError:
        return "not UTF-8"


def budget_reason(budget: timedelta) -> str:
    return f"exceeded the time budget of {budget.total_seconds():g} s"


def failure_reason(error: BaseException) -> str:
    # The type only: messages of text-handling errors can quote the post
    # (UnicodeEncodeError names the character and its position).
    return f"classification failed: {type(error).__name__}"


def backoff(first: timedelta, attempt: int) -> float:
    """Seconds to wait before try ``attempt`` (1-based count of failed tries)."""
    return first.total_seconds() * 2 ** (attempt - 1)


def stream_state(*, agent: str, failed: bool, lag: int, quiet_s: float, stall_after_s: float) -> str:
    """The stream worker as /readyz reports it.

    ``agent``: "starting", "running" or "stopped"; ``quiet_s``: seconds since the
    worker last showed it is keeping up (a batch or post handled, or no lag seen).
    Records waiting with no progress for longer than ``stall_after_s`` is a stall.
    """
    if failed or agent == "stopped":
        return "stopped"
    if agent == "starting":
        return "starting"
    if lag > 0 and quiet_s > stall_after_s:
        return "stalled"
    return "ok"


@dataclass
class StreamProgress:
    """When the worker last showed it keeps up, for the stall check."""

    since: float  # monotonic: start, last progress, or last time the lag was 0
    lag: int = 0

    def progressed(self, now: float) -> None:
        self.since = now

    def observed_lag(self, lag: int, now: float) -> None:
        # Lag is measured every few seconds; a lag of 0 means caught up, so the
        # clock starts when records arrive, not at the last batch before a quiet hour.
        self.lag = lag
        if lag == 0:
            self.since = now


def in_thread(fn: Callable[[], Any]) -> asyncio.Future:
    """Run ``fn`` in a new daemon thread; the returned future settles in the loop.

    Not asyncio.to_thread: CPU-bound Python cannot be interrupted, so a thread
    given up on past its budget runs on, and in the shared executor it would hold
    a worker the next batch needs (enough of them would stall the stream).
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def work() -> None:
        try:
            result, error = fn(), None
        except BaseException as e:
            result, error = None, e
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while this thread overran its budget
            pass

    threading.Thread(target=work, name="classify-work", daemon=True).start()
    return future


class ProduceFailed(Exception):
    """Kafka did not take a batch's output after every try."""


class StreamFailed(Exception):
    """The stream worker stopped and cannot go on without skipping records."""


class ClassifyService:
    def __init__(self, settings: Settings, classifier: Classifier | None = None):
        self.settings = settings
        self.classifier = classifier
        self.app_id = settings.classify.app_id
        self.metrics = ClassifyMetrics()
        self.tasks: dict[str, asyncio.Task] = {}
        self.server: EmbeddedServer | None = None
        self.consumer: BatchConsumer | None = None
        self.producer = None
        self.agent = "starting"
        self.progress = StreamProgress(time.monotonic())
        self.failure: asyncio.Future | None = None
        self.stopping = False
        self._encoded_seen = 0

    # ------------------------------------------------------------------ wiring
    async def start(self, *, serve_http: bool = True) -> None:
        from aiokafka import AIOKafkaProducer

        s, topics = self.settings, self.settings.kafka.topics
        if serve_http:
            # Health answers while the model loads, so supervisors see a live process.
            self.server = EmbeddedServer.for_app(self.http_app(), s.classify.host, s.classify.port)
            self.tasks["http"] = asyncio.create_task(self.server.serve(), name="classify-http")
        if self.classifier is None:
            self.classifier = await asyncio.to_thread(Classifier.from_settings, s)
        await asyncio.to_thread(self.classifier.warm_up)
        self._encoded_seen = self.classifier.encoded
        # The model, tokenizer and language models are hundreds of thousands of objects
        # that live as long as the process; frozen, the collector stops scanning them
        # on every full collection (about 8% of the CPU per skipped post, measured).
        gc.collect()
        gc.freeze()
        self.failure = asyncio.get_running_loop().create_future()
        self.tasks["stream"] = asyncio.create_task(self._watch_stream(), name="classify-stream")
        await asyncio.to_thread(ensure_topics, s.kafka.bootstrap_servers,
                                [topics.posts_raw, topics.posts_classified, topics.deadletter],
                                **s.kafka.topic_layout())
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers, client_id=f"{self.app_id}-out",
                                         acks="all", enable_idempotence=True, linger_ms=5)
        await self.producer.start()
        c = s.classify
        # Offsets are committed once a second, not per batch: at firehose rates a commit
        # per batch cost more than classifying the irrelevant posts; a crash re-reads
        # at most about a second (ids absorb it).
        self.consumer = BatchConsumer(bootstrap_servers=s.kafka.bootstrap_servers, group_id=self.app_id,
                                      topic=topics.posts_raw, handle=self.handle_batch, max_records=c.batch_size,
                                      within_s=c.batch_within.total_seconds(), client_id=self.app_id)
        await self.consumer.start()
        self.tasks["worker"] = asyncio.create_task(self._agent(), name="classify-worker")
        self.tasks["lag"] = asyncio.create_task(
            watch_lag(s.kafka.bootstrap_servers, {topics.posts_raw: self.app_id},
                      self._observe_lag,
                      client_id=f"{self.app_id}-lag"), name="classify-lag")
        log.info("classify started", extra={"model": self.classifier.model_info.encoder,
                                            "runtime": self.classifier.encoder.runtime,
                                            "scope": self.classifier.scope,
                                            "heads": self.classifier.model_info.heads})

    async def wait(self) -> None:
        await first_crash(self.tasks, log)

    async def stop(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.should_exit = True
        deadline = StopDeadline(log)
        for task in self.tasks.values():
            if task.get_name() != "classify-http":
                task.cancel()
        # The worker's task first: the consumer commits only batches it finished.
        await deadline.tasks("tasks", [t for t in self.tasks.values() if t.get_name() != "classify-http"])
        if self.consumer is not None:
            await deadline.step("consumer", self.consumer.stop())
        if self.producer is not None:
            await deadline.step("producer", self.producer.stop())
        await deadline.tasks("http", [t for t in self.tasks.values() if t.get_name() == "classify-http"])
        log.info("classify stopped")

    # ------------------------------------------------------------------ stream
    async def _agent(self) -> None:
        self.agent = "running"
        self.progress.progressed(time.monotonic())
        try:
            await self.consumer.run()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            # The batch in hand was not committed and no further one is taken (a later
            # commit would pass it): the process exits, to restart from there.
            self._fail(e)
            raise
        finally:
            self.agent = "stopped"
            if not self.stopping:
                self._fail(StreamFailed("the stream worker exited"))

    def _fail(self, error: BaseException) -> None:
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(type(error).__name__)

    async def _watch_stream(self) -> None:
        """Ends, crashing the service, when the stream worker stopped for good: the
        restarted process reads again from the last committed offset."""
        raise StreamFailed(f"stream worker stopped: {await self.failure}")

    def _observe_lag(self, topic: str, lag: int) -> None:
        self.metrics.set_lag(topic, lag)
        self.progress.observed_lag(lag, time.monotonic())

    async def handle_batch(self, records: Sequence) -> None:
        """Classify a batch of ``posts.raw`` records and produce what comes of them;
        returns only when Kafka has it all (or raises ProduceFailed)."""
        posts, good, bad, classified = [], [], [], []
        for record in records:
            parsed = parse_post(record.value)
            if isinstance(parsed, Post):
                posts.append(parsed)
                good.append(record)
            else:
                bad.append((record, parsed))
        topic, out, skipped = self.settings.kafka.topics.posts_classified, [], []
        forward_skipped = self.settings.classify.irrelevant == "forward"
        for record, outcome in zip(good, await self._classify(posts) if posts else []):
            if not isinstance(outcome, str) and outcome.skipped:
                skipped.append(outcome)
                if not forward_skipped:
                    continue  # not kept past classification (privacy: it mentions no one we watch)
            if not isinstance(outcome, str):
                try:
                    out.append((topic, outcome.id.encode(), outcome.to_bytes()))
                    classified.append(outcome)
                    continue
                except Exception as e:  # one post's output must not stop the batch
                    outcome = failure_reason(e)
            bad.append((record, outcome))
        out += [self._deadletter(record, reason) for record, reason in bad]
        # Not before Kafka has every record: returning lets the consumer commit the batch.
        await self._produce(out)
        self.progress.progressed(time.monotonic())
        for post in classified:
            self.metrics.count_mentions(post)
        self.metrics.count_skipped(skipped)
        # The classifier counts what reached the encoder (a thread given up on past
        # its budget may still add some; they show in the next batch's delta).
        encoded = self.classifier.encoded
        self.metrics.encoded.inc(encoded - self._encoded_seen)
        self._encoded_seen = encoded
        self.metrics.posts.labels("skipped").inc(len(skipped))
        self.metrics.posts.labels("classified").inc(len(records) - len(bad) - len(skipped))
        if bad:
            self.metrics.posts.labels("deadletter").inc(len(bad))
            self.metrics.deadletters.labels(SERVICE).inc(len(bad))

    async def _produce(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send every record and wait until Kafka has it; send again what failed,
        with backoff. Raises ProduceFailed after the last try."""
        c = self.settings.classify
        for attempt in range(c.produce_attempts):
            if attempt:
                await asyncio.sleep(backoff(c.produce_backoff, attempt))
            records, errors = await self._send(records)
            if not records:
                return
            log.warning("Kafka did not take records; sending them again",
                        extra={"records": len(records), "attempt": attempt + 1, "errors": sorted(errors)})
        raise ProduceFailed(f"{len(records)} records not produced after {c.produce_attempts} tries")

    async def _send(self, records: list) -> tuple[list, set[str]]:
        """The records Kafka did not acknowledge, and the error types."""
        sent, failed, errors = [], [], set()
        for record in records:
            try:
                topic, key, value = record
                sent.append((record, await self.producer.send(topic, value, key=key)))
            except Exception as e:
                failed.append(record)
                errors.add(type(e).__name__)
        outcomes = await asyncio.gather(*(delivery for _, delivery in sent), return_exceptions=True)
        for (record, _), outcome in zip(sent, outcomes):
            if isinstance(outcome, BaseException):
                failed.append(record)
                errors.add(type(outcome).__name__)
        return failed, errors

    async def _classify(self, posts: list[Post]) -> list[ClassifiedPost | str]:
        """Each post classified, or why not. The batch runs within its budget; if it
        overruns or fails, post by post, each within its own budget."""
        c = self.settings.classify
        start = time.perf_counter()
        result = await self._attempt(posts, c.batch_budget)
        if not isinstance(result, str):
            self.metrics.batch.observe(len(posts))
            self.metrics.inference.observe(time.perf_counter() - start)
            return result
        log.warning("batch not classified; classifying its posts one by one",
                    extra={"posts": len(posts), "reason": result})
        outcomes: list[ClassifiedPost | str] = []
        for post in posts:
            one = await self._attempt([post], c.post_budget)
            outcomes.append(one if isinstance(one, str) else one[0])
            self.progress.progressed(time.monotonic())
        return outcomes

    async def _attempt(self, posts: list[Post], budget: timedelta) -> list[ClassifiedPost] | str:
        """The classified posts, or why there are none."""
        gave_up = threading.Event()
        future = in_thread(lambda: self.classifier.classify_posts(posts, abandoned=gave_up))
        try:
            done, _ = await asyncio.wait({future}, timeout=budget.total_seconds())
        finally:
            if not future.done():
                gave_up.set()
                self._overran(future)
        if not done:
            self.metrics.overruns.inc()
            return budget_reason(budget)
        try:
            return future.result()
        except Exception as e:
            return failure_reason(e)

    def _overran(self, future: asyncio.Future) -> None:
        """Count the thread as running on until it ends on its own."""
        self.metrics.overrunning.inc()

        def ended(f: asyncio.Future) -> None:
            self.metrics.overrunning.dec()
            if not f.cancelled():
                f.exception()  # retrieved: nobody waits for it any more

        future.add_done_callback(ended)

    def _deadletter(self, msg, reason: str) -> tuple[str, bytes | None, bytes]:
        record = DeadLetter.for_record(service=SERVICE, topic=msg.topic, partition=msg.partition,
                                       offset=msg.offset, key=msg.key, value=msg.value, reason=reason)
        log.warning("dead-lettered record", extra={"topic": msg.topic, "partition": msg.partition,
                                                   "offset": msg.offset, "reason": reason})
        return self.settings.kafka.topics.deadletter, msg.key, record.to_bytes()

    # ------------------------------------------------------------------ http
    def http_app(self) -> FastAPI:
        api = FastAPI(title="Lyssna classify", docs_url=None, redoc_url=None, openapi_url=None)
        api.include_router(health_router(self.readiness_checks, self.metrics.render))
        return api

    async def readiness_checks(self) -> dict[str, str]:
        checks = {"model": "ok" if self.classifier is not None else "loading",
                  "kafka": "ok" if self.consumer is not None and not self.consumer.rebalancing else "connecting"}
        if self.consumer is not None:
            checks["stream"] = stream_state(
                agent=self.agent, failed=self.failure is not None and self.failure.done(),
                lag=self.progress.lag, quiet_s=time.monotonic() - self.progress.since,
                stall_after_s=self.settings.classify.stall_after.total_seconds())
        for name, task in self.tasks.items():
            if task.done():
                checks[name] = "stopped"
        return checks


def run(settings: Settings) -> None:
    setup_logging(SERVICE)
    service = ClassifyService(settings)
    asyncio.run(run_until_signal(service.start, service.wait, service.stop))
