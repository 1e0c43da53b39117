"""Runs the configured connectors as asyncio tasks inside the ingest service.

For every batch a connector yields: ingest it through the shared pipeline, send
what the pipeline rejected to the dead-letter topic, and only then store the
batch's cursor. A crash at any point therefore re-reads at most the batches
whose cursor was not stored yet, and dedup absorbs what of them was already
produced. Kafka or Redis being down pauses the connector (the batch is retried,
never dropped); a failing source is restarted from its stored cursor after a
growing delay.

In the service the runner is shared (``share``): several ingest replicas read
the same ``sources:``, and each runs only the sources Kafka's group membership
assigns to it, writing cursors under a fencing token (``assignment.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Sequence

import httpx

from lyssna.common.config import Settings

from .assignment import ConnectorGroup, Fenced, FencedCursorStore, group_name, slots
from .connectors.base import Batch, Connector, CursorStore, backoff_delay, connector_name
from .metrics import IngestMetrics
from .normalize import Rejection
from .pipeline import REJECTED, Pipeline, Unavailable
from .producer import KafkaUnavailable

log = logging.getLogger(__name__)

#: How long stop() lets a batch that is being delivered finish (acks, cursor).
STOP_GRACE_S = 15.0


def build_connectors(settings: Settings, *, http: httpx.AsyncClient | None = None) -> list[Connector]:
    """One connector per configured source, found by its ``type``."""
    from .connectors import CONNECTORS

    return [CONNECTORS[src.type].from_source(src, connector_name(src, i), settings, http=http)
            for i, src in enumerate(settings.sources)]


class ConnectorRunner:
    def __init__(self, connectors: Sequence[Connector], pipeline: Pipeline, cursors: CursorStore,
                 metrics: IngestMetrics, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 unavailable_base_s: float = 1.0, unavailable_cap_s: float = 30.0):
        self.connectors = list(connectors)
        self.pipeline = pipeline
        self.cursors = cursors
        self.metrics = metrics
        self._sleep = sleep
        self._unavailable_base_s = unavailable_base_s
        self._unavailable_cap_s = unavailable_cap_s
        self._tasks: dict[str, asyncio.Task] = {}
        self._delivering: set[asyncio.Task] = set()
        #: Connectors that reached their end (a replayed file), by name.
        self.finished: set[str] = set()
        #: Set by ``share``: the group that assigns sources to this replica.
        self.group: ConnectorGroup | None = None
        #: How long a fenced connector waits before claiming its source again.
        self.fenced_retry_s = 10.0

    def share(self, settings: Settings) -> None:
        """Run only the sources Kafka assigns to this replica (``assignment.py``);
        the cursor store must be a :class:`FencedCursorStore`."""
        if not isinstance(self.cursors, FencedCursorStore):
            raise TypeError("a shared runner writes its cursors through a FencedCursorStore")
        ing = settings.ingest
        self.fenced_retry_s = ing.connectors_session_timeout.total_seconds()
        self.group = ConnectorGroup(
            settings.kafka.bootstrap_servers, ing.connectors_group or group_name(settings.redis.key_prefix),
            slots(c.cursor_key for c in self.connectors), session_timeout_s=self.fenced_retry_s,
            replication_factor=settings.kafka.replication_factor,
            min_insync_replicas=settings.kafka.min_insync_replicas,
            start_keys=self._start_keys, stop_keys=self._halt)

    def start(self) -> None:
        """Every connector, or, when shared, those the group assigns from now on."""
        if self.group is not None:
            self.group.start()
            return
        for c in self.connectors:
            self._start(c)

    def _start(self, c: Connector) -> None:
        if c.name not in self._tasks:
            self._tasks[c.name] = asyncio.create_task(self.run_connector(c), name=f"connector:{c.name}")

    async def _start_keys(self, keys: set[str]) -> None:
        for c in self.connectors:
            if c.cursor_key in keys:
                self._start(c)

    async def _halt(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every running connector; a batch already on its way to Kafka may finish
        (acks and cursor) within ``grace_s``, so a clean stop does not leave work to be redone."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._delivering:
            _, late = await asyncio.wait(set(self._delivering), timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop reading (and, when shared, leave the group after the connectors stopped,
        so the next owner never overlaps with this one), then close the connectors."""
        if self.group is not None:
            await self.group.stop()
        await self._halt(grace_s)
        for c in self.connectors:
            try:
                await c.aclose()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.exception("closing connector failed", extra={"connector": c.name})

    async def wait(self) -> None:
        """Until every connector has ended (only finite ones do; for tests and replays)."""
        await asyncio.gather(*self._tasks.values())

    async def run_connector(self, c: Connector) -> None:
        failures = 0
        while True:
            try:
                if isinstance(self.cursors, FencedCursorStore):
                    await self.cursors.claim(c.cursor_key)  # before reading: fences older owners
                cursor = await self.cursors.get(c.cursor_key)
                log.info("connector starting", extra={"connector": c.name, "cursor": cursor})
                batches = c.batches(cursor)
                try:
                    async for batch in batches:
                        # Shielded: cancelling the connector must not cut a delivery
                        # between the acks and the cursor; stop() waits for it.
                        delivery = asyncio.ensure_future(self._deliver(c, batch))
                        self._delivering.add(delivery)
                        delivery.add_done_callback(self._delivering.discard)
                        await asyncio.shield(delivery)
                        failures = 0
                        self.metrics.connector_last_success.labels(c.name).set(time.time())
                finally:
                    await batches.aclose()
                log.info("connector finished", extra={"connector": c.name})
                self.finished.add(c.name)
                return
            except asyncio.CancelledError:
                raise
            except Fenced:
                # Another replica took the source over (Kafka dropped this one); Kafka
                # will revoke it here within a session. Claiming it back sooner would
                # only fence the new owner in turn.
                log.warning("connector fenced by a newer owner; pausing it", extra={
                    "connector": c.name, "retry_in_s": self.fenced_retry_s})
                await self._sleep(self.fenced_retry_s)
            except Exception as e:  # noqa: BLE001 - a connector must never take the service down
                failures += 1
                self.metrics.connector_errors.labels(c.name).inc()
                delay = backoff_delay(failures, c.retry_base_s, c.retry_cap_s,
                                      retry_after=getattr(e, "retry_after", None))
                log.warning("connector failed; retrying", extra={
                    "connector": c.name, "error": f"{type(e).__name__}: {e}",
                    "failures": failures, "retry_in_s": round(delay, 2)})
                await self._sleep(delay)

    async def _deliver(self, c: Connector, batch: Batch) -> None:
        items = list(batch.items)
        dead: list[Rejection] = []
        down = 0
        in_flight_rounds = 0
        while items:
            try:
                results = await self.pipeline.ingest(items, channel=c.type)
            except Unavailable as e:
                down += 1
                await self._pause(c, e, down)
                continue
            down = 0
            retry = []
            for r in results:
                if r.status != REJECTED:
                    continue
                if r.retryable:
                    # Held by another request: it ends as produced (then a duplicate
                    # here) or released; a reservation also expires on its own.
                    retry.append(items[r.index])
                else:
                    item = items[r.index]
                    dead.append(item if isinstance(item, Rejection) else Rejection(r.reason or "rejected"))
            items = retry
            if items:
                in_flight_rounds += 1
                await self._sleep(min(10.0, 0.5 * in_flight_rounds))
        while dead:
            try:
                await self.pipeline.dead_letter(f"connector:{c.name}", dead)
                log.warning("connector items dead-lettered",
                            extra={"connector": c.name, "count": len(dead), "first_reason": dead[0].reason})
                dead = []
            except KafkaUnavailable as e:
                down += 1
                await self._pause(c, e, down)
        if batch.cursor is not None:
            await self.cursors.set(c.cursor_key, batch.cursor)

    async def _pause(self, c: Connector, error: Exception, attempt: int) -> None:
        delay = backoff_delay(attempt, self._unavailable_base_s, self._unavailable_cap_s)
        log.warning("dependency down; holding the connector's batch", extra={
            "connector": c.name, "error": str(error), "retry_in_s": round(delay, 2)})
        await self._sleep(delay)
