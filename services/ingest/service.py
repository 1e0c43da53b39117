"""``lyssna serve ingest``: the push API and the configured connectors in one process.

Built like classify and alerts: a service object whose ``start`` / ``wait`` /
``stop`` ``run_until_signal`` drives. Its components share one state (Redis,
the Kafka producer, the pipeline): the HTTP API (``app.create_app``, served in
the service's own event loop) and the connector runner (``runner``). At start
it refuses a Redis that may evict keys; Kafka being down is only logged, since
the API answers 503 and the connectors hold their batches until it is back.
"""

from __future__ import annotations

import asyncio
import logging

from lyssna.common.config import Settings
from lyssna.common.logs import setup_logging
from lyssna.common.redis_policy import refuse_evicting_redis
from lyssna.common.runtime import EmbeddedServer, StopDeadline, first_crash, run_until_signal

from .app import build_state, create_app
from .assignment import FencedCursorStore
from .metrics import IngestMetrics
from .runner import ConnectorRunner, build_connectors

log = logging.getLogger("lyssna.ingest")


class IngestService:
    def __init__(self, settings: Settings, *, serve_http: bool = True, run_connectors: bool = True,
                 metrics: IngestMetrics | None = None, delivery_timeout_s: float = 10.0):
        self.settings = settings
        self.state = build_state(settings, metrics, delivery_timeout_s)
        self.app = create_app(self.state)
        self.serve_http = serve_http
        self.run_connectors = run_connectors
        self.server: EmbeddedServer | None = None
        self.runner: ConnectorRunner | None = None
        self.tasks: dict[str, asyncio.Task] = {}

    async def start(self) -> None:
        s = self.settings
        if not (s.api_keys or s.scoped_api_keys):
            log.warning("no API keys configured (LYSSNA_API_KEY or LYSSNA_INGEST_API_KEYS): "
                        "POST /v1/posts refuses every request")
        await refuse_evicting_redis(self.state.redis, "ingest")
        problem = await self.state.producer.check()
        if problem:
            log.warning("kafka not reachable at start-up; answering 503 until it is", extra={"error": problem})
        if self.run_connectors and s.sources:
            # Shared: each source is polled by the one replica Kafka assigns it to (assignment.py).
            self.runner = ConnectorRunner(build_connectors(s), self.state.pipeline,
                                          FencedCursorStore(self.state.redis, s.redis.key_prefix), self.state.metrics)
            self.runner.share(s)
            self.runner.start()
        if self.serve_http:
            self.server = EmbeddedServer.for_app(self.app, s.ingest.host, s.ingest.port)
            self.tasks["http"] = asyncio.create_task(self.server.serve(), name="ingest-http")
        log.info("ingest started", extra={"host": s.ingest.host, "port": s.ingest.port, "sources": len(s.sources)})

    async def wait(self) -> None:
        # Connectors retry their own failures; the API server ending is a crash.
        if self.tasks:
            await first_crash(self.tasks, log)
        else:  # no HTTP server (tests drive the app in-process): runs until stopped
            await asyncio.Event().wait()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        deadline = StopDeadline(log)
        if self.runner is not None:
            await deadline.step("connectors", self.runner.stop())
        await deadline.tasks("http", self.tasks.values())
        await deadline.step("producer", self.state.producer.close())
        await deadline.step("redis", self.state.redis.aclose())
        log.info("ingest stopped")


def run(settings: Settings) -> None:
    setup_logging("ingest")
    service = IngestService(settings)
    asyncio.run(run_until_signal(service.start, service.wait, service.stop))


if __name__ == "__main__":
    from lyssna.common.config import load_settings

    run(load_settings())
