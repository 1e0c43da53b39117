"""The classify worker: a Faust agent from ``posts.raw`` to ``posts.classified``.

Records arrive in micro-batches (``take_events``) so the transformer sees
batches. Faust acknowledges a batch's events only when the loop body returns,
and the body returns only after Kafka acknowledged every classified record
(and every dead letter), so a committed offset always means "produced": a
worker killed at any point re-reads, never skips. Duplicates after a crash
carry the same post id and are absorbed downstream.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import logging
import time
from collections.abc import Sequence

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from lyssna.common.config import Settings
from lyssna.common.contracts import DeadLetter, Post
from lyssna.common.kafka_admin import ensure_topics
from lyssna.common.logs import setup_logging
from lyssna.common.runtime import EmbeddedServer, first_crash, run_until_signal, watch_lag

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


class ClassifyService:
    def __init__(self, settings: Settings, classifier: Classifier | None = None):
        self.settings = settings
        self.classifier = classifier
        self.app_id = settings.classify.app_id
        self.metrics = ClassifyMetrics()
        self.tasks: dict[str, asyncio.Task] = {}
        self.server: EmbeddedServer | None = None
        self.app = None

    # ------------------------------------------------------------------ wiring
    async def start(self, *, serve_http: bool = True) -> None:
        import faust  # heavy; only the worker needs it

        s, topics = self.settings, self.settings.kafka.topics
        if serve_http:
            # Health answers while the model loads, so supervisors see a live process.
            self.server = EmbeddedServer.for_app(self.http_app(), s.classify.host, s.classify.port)
            self.tasks["http"] = asyncio.create_task(self.server.serve(), name="classify-http")
        if self.classifier is None:
            self.classifier = await asyncio.to_thread(Classifier.from_settings, s)
        await asyncio.to_thread(ensure_topics, s.kafka.bootstrap_servers,
                                [topics.posts_raw, topics.posts_classified, topics.deadletter],
                                **s.kafka.topic_layout())
        self.app = faust.App(
            self.app_id, broker=f"kafka://{s.kafka.bootstrap_servers}", store="memory://",
            web_enabled=False, producer_acks=-1, topic_partitions=s.kafka.partitions,
            topic_allow_declare=False, consumer_auto_offset_reset="earliest",
            broker_commit_every=s.classify.batch_size, broker_commit_interval=1.0,
            datadir=os.path.join(tempfile.gettempdir(), f"{self.app_id}-faust"),
        )
        source = self.app.topic(topics.posts_raw, key_serializer="raw", value_serializer="raw")
        self.app.agent(source, name=f"{self.app_id}.classify", concurrency=1)(self._agent)
        await self.app.start()
        self.tasks["lag"] = asyncio.create_task(
            watch_lag(s.kafka.bootstrap_servers, {topics.posts_raw: self.app_id},
                      self.metrics.set_lag,
                      client_id=f"{self.app_id}-lag"), name="classify-lag")
        log.info("classify started", extra={"model": self.classifier.model_info.encoder,
                                            "heads": self.classifier.model_info.heads})

    async def wait(self) -> None:
        await first_crash(self.tasks, log)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        for task in self.tasks.values():
            if task.get_name() != "classify-http":
                task.cancel()
        if self.app is not None:
            await self.app.stop()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        log.info("classify stopped")

    # ------------------------------------------------------------------ stream
    async def _agent(self, stream) -> None:
        c = self.settings.classify
        async for events in stream.take_events(c.batch_size, within=c.batch_within.total_seconds()):
            await self.handle_batch(events)

    async def handle_batch(self, events: Sequence) -> None:
        posts, good, bad, classified = [], [], [], []
        for event in events:
            parsed = parse_post(event.value)
            if isinstance(parsed, Post):
                posts.append(parsed)
                good.append(event)
            else:
                bad.append((event, parsed))
        pending = []
        if posts:
            classified, failed = await self._classify(posts)
            bad.extend((good[i], reason) for i, reason in failed)
            topic = self.settings.kafka.topics.posts_classified
            for post in classified:
                pending.append(await self.app.producer.send(topic, post.id.encode(), post.to_bytes(),
                                                            None, None, None))
        for event, reason in bad:
            pending.append(await self._deadletter(event, reason))
        # The loop body must not return before Kafka has every record: returning
        # acknowledges the source offsets.
        await asyncio.gather(*pending)
        for post in classified:
            self.metrics.count_mentions(post)
        self.metrics.posts.labels("classified").inc(len(events) - len(bad))
        if bad:
            self.metrics.posts.labels("deadletter").inc(len(bad))
            self.metrics.deadletters.labels(SERVICE).inc(len(bad))

    async def _classify(self, posts: list[Post]):
        """Classify a batch; if the batch fails, find the post(s) that make it fail."""
        start = time.perf_counter()
        try:
            result = await asyncio.to_thread(self.classifier.classify_posts, posts)
            self.metrics.batch.observe(len(posts))
            self.metrics.inference.observe(time.perf_counter() - start)
            return result, []
        except Exception:
            log.exception("batch failed; classifying its posts one by one", extra={"posts": len(posts)})
        ok, failed = [], []
        for i, post in enumerate(posts):
            try:
                ok.extend(await asyncio.to_thread(self.classifier.classify_posts, [post]))
            except Exception as e:
                failed.append((i, f"classification failed: {type(e).__name__}: {e}"[:500]))
        return ok, failed

    async def _deadletter(self, event, reason: str):
        msg = event.message
        record = DeadLetter.for_record(service=SERVICE, topic=msg.topic, partition=msg.partition,
                                       offset=msg.offset, key=msg.key, value=msg.value, reason=reason)
        log.warning("dead-lettered record", extra={"topic": msg.topic, "partition": msg.partition,
                                                   "offset": msg.offset, "reason": reason})
        return await self.app.producer.send(self.settings.kafka.topics.deadletter, msg.key, record.to_bytes(),
                                            None, None, None)

    # ------------------------------------------------------------------ http
    def http_app(self) -> FastAPI:
        api = FastAPI(title="Lyssna classify", docs_url=None, redoc_url=None, openapi_url=None)

        @api.get("/healthz")
        async def healthz() -> dict:
            return {"status": "ok"}

        @api.get("/readyz")
        async def readyz() -> Response:
            checks = {"model": "ok" if self.classifier is not None else "loading",
                      "kafka": "ok" if self.app is not None and self.app.started and not self.app.rebalancing
                      else "connecting"}
            for name, task in self.tasks.items():
                if task.done():
                    checks[name] = "stopped"
            ready = all(v == "ok" for v in checks.values())
            return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

        @api.get("/metrics")
        async def metrics() -> Response:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

        return api


def run(settings: Settings) -> None:
    setup_logging(SERVICE)
    service = ClassifyService(settings)
    asyncio.run(run_until_signal(service.start, service.wait, service.stop))
