"""A consumer-group member that hands records over in batches and commits only what
its handler finished: the plain aiokafka loop the classify worker runs on.

Why not a Faust agent: at firehose rates almost every post is dropped after a
cheap look (no watched organization), and Faust's per-record machinery (an
Event, acks, stream tasks) cost more CPU than that look. Here a batch is one
``getmany`` result, handled whole, and the group's offsets move once a second.

The rule that keeps records from being lost: an offset is committed only after
the handler returned for its record's batch (for classify: Kafka acknowledged
every output). A handler that raises ends the loop without committing the batch,
and the process restarts from the last committed offset, so a crash re-reads,
never skips. On a rebalance the revoked partitions' finished offsets are
committed while the batch in hand finishes first, so the next owner starts
exactly where this one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.structs import TopicPartition

log = logging.getLogger("lyssna.consumer")

Handler = Callable[[Sequence[Any]], Awaitable[None]]


class BatchConsumer:
    """``handle`` gets lists of aiokafka ``ConsumerRecord``s (topic, partition,
    offset, key, value), at most ``max_records`` each, gathered for at most
    ``within_s`` after the first one arrived, one batch at a time."""

    def __init__(self, *, bootstrap_servers: str, group_id: str, topic: str, handle: Handler,
                 max_records: int, within_s: float, client_id: str, commit_interval_s: float = 1.0,
                 session_timeout_ms: int = 15_000):
        self.topic, self.handle = topic, handle
        self.max_records, self.within_s, self.commit_interval_s = max_records, within_s, commit_interval_s
        self._config = dict(bootstrap_servers=bootstrap_servers, group_id=group_id, client_id=client_id,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            session_timeout_ms=session_timeout_ms,
                            # The broker answers a fetch when it has this much or the batch's wait
                            # is up, not at the first record: under a steady stream each fetch
                            # otherwise carried a handful of records, and the per-fetch work cost
                            # more than the records (0.4 ms of CPU per post at 3,000 posts/s).
                            fetch_min_bytes=64 * 1024, fetch_max_wait_ms=max(1, min(500, int(within_s * 1000))),
                            heartbeat_interval_ms=max(1000, session_timeout_ms // 5),
                            # A batch can take a while through the encoder (its budget is
                            # classify.batch_budget); the group must not drop the member for it.
                            max_poll_interval_ms=600_000)
        self.consumer = None
        self.rebalancing = True  # until the first assignment
        self._done: dict[Any, int] = {}  # partition -> next offset to read, batches handled
        self._busy = asyncio.Lock()  # held while a batch is handled: a revocation waits for it
        self._last_commit = time.monotonic()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        owner = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                owner.rebalancing = True
                async with owner._busy:
                    await owner._commit(only=set(revoked))

            async def on_partitions_assigned(self, assigned):
                owner.rebalancing = False
                log.info("partitions assigned", extra={"topic": owner.topic,
                                                       "partitions": sorted(tp.partition for tp in assigned)})

        self.consumer = AIOKafkaConsumer(**self._config)
        self.consumer.subscribe([self.topic], listener=Listener())
        await self.consumer.start()

    async def run(self) -> None:
        """Take and handle batches until cancelled or the handler raises (then the
        batch in hand is not committed, and the exception propagates)."""
        while True:
            batch = await self._take()
            if batch:
                async with self._busy:
                    await self.handle(batch)
                    for record in batch:  # in offset order within each partition
                        self._done[TopicPartition(record.topic, record.partition)] = record.offset + 1
            if time.monotonic() - self._last_commit >= self.commit_interval_s:
                async with self._busy:
                    await self._commit()

    async def _take(self) -> list:
        records: list = []
        deadline = None
        while len(records) < self.max_records:
            wait_s = self.within_s if deadline is None else deadline - time.monotonic()
            if wait_s <= 0:
                break
            got = await self.consumer.getmany(timeout_ms=int(wait_s * 1000), max_records=self.max_records - len(records))
            for part in got.values():
                records.extend(part)
            if not records:
                return records  # nothing within the wait: let the caller commit and come back
            if deadline is None:
                deadline = time.monotonic() + self.within_s
            if not got:
                break
        return records

    async def _commit(self, only: set | None = None) -> None:
        """Commit the finished offsets of partitions this member still holds (another
        member's progress on a partition it took over must not be overwritten)."""
        self._last_commit = time.monotonic()
        held = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in self._done.items() if tp in held and (only is None or tp in only)}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as e:  # not fatal: the records are read again by whoever owns them next
            log.warning("could not commit offsets", extra={"topic": self.topic, "error": type(e).__name__})
            return
        for tp, offset in offsets.items():
            if self._done.get(tp) == offset:
                del self._done[tp]

    async def stop(self) -> None:
        """Commit what was finished and leave the group."""
        if self.consumer is None:
            return
        try:
            await self._commit()
        finally:
            await self.consumer.stop()

    def assigned(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment()) if self.consumer else []

