"""kafka-python producer for posts: a batch in, one acknowledgement result per record out.

``acks=all`` with the idempotent producer, so an acknowledged record is on every
in-sync replica and a retried send is not written twice. The delivery timeout is
bounded and shorter than our wait, so by the time a batch is answered every
record has either been acknowledged or definitely given up on by the client:
nothing answered as "not accepted" lands on the topic later (short of a broker
writing a record whose acknowledgement was lost, which dedup absorbs).

Kafka being down must not take the service down: the client is created lazily
and recreated on demand, and after a failure a cheap TCP probe answers "down"
at once instead of letting every request wait for the delivery timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Mapping, Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from lyssna.common.kafka_admin import ensure_topics

log = logging.getLogger(__name__)


_UNANSWERED = object()


class KafkaUnavailable(Exception):
    """No broker takes our records right now; nothing of the batch was acknowledged."""


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    out = []
    for part in servers.split(","):
        part = part.strip()
        if not part:
            continue
        host, _, port = part.rpartition(":")
        out.append((host.strip("[]") or "localhost", int(port or 9092)))
    return out


def tcp_reachable(addresses: Sequence[tuple[str, int]], timeout_s: float = 1.0) -> bool:
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


class PostProducer:
    def __init__(self, bootstrap_servers: str, *, topics: Sequence[str] = (),
                 topic_layout: Mapping[str, int] | None = None,
                 client_id: str = "lyssna-ingest", delivery_timeout_s: float = 10.0,
                 linger_ms: int = 5, batch_size: int = 512 * 1024, on_latency=None):
        self.bootstrap_servers = bootstrap_servers
        self._addresses = bootstrap_addresses(bootstrap_servers)
        self._topics = list(topics)
        # ensure_topics keywords: partitions, replication_factor, min_insync_replicas
        self._topic_layout = dict(topic_layout or {"partitions": 3})
        self._client_id = client_id
        self._delivery_timeout_ms = int(delivery_timeout_s * 1000)
        self._request_timeout_ms = max(1000, self._delivery_timeout_ms // 2 - linger_ms)
        self._linger_ms = linger_ms
        self._batch_size = batch_size
        self._on_latency = on_latency
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        # Until a batch has gone through, probe before trusting the broker.
        self._suspect = True
        self._closed = False

    # ------------------------------------------------------------ connection

    def _connect(self) -> KafkaProducer:
        """The producer, created on first use (blocking; call from a worker thread)."""
        with self._lock:
            if self._closed:
                raise KafkaUnavailable("producer is closed")
            if self._producer is not None:
                return self._producer
            if not tcp_reachable(self._addresses):
                raise KafkaUnavailable(f"no Kafka broker accepts connections at {self.bootstrap_servers}")
            try:
                if self._topics:
                    ensure_topics(self.bootstrap_servers, self._topics, timeout_ms=5000, **self._topic_layout)
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, client_id=self._client_id,
                    acks="all", enable_idempotence=True,
                    linger_ms=self._linger_ms, batch_size=self._batch_size,
                    delivery_timeout_ms=self._delivery_timeout_ms,
                    request_timeout_ms=self._request_timeout_ms,
                    max_block_ms=min(5000, self._delivery_timeout_ms),
                    bootstrap_timeout_ms=5000,
                    # Come back quickly once the broker is back; the default waits up to 30 s.
                    reconnect_backoff_max_ms=1000,
                )
            except KafkaError as e:
                raise KafkaUnavailable(f"cannot connect to Kafka at {self.bootstrap_servers}: {e}") from e
            log.info("kafka producer connected", extra={"bootstrap_servers": self.bootstrap_servers})
            return self._producer

    def _probe(self) -> None:
        if not tcp_reachable(self._addresses):
            raise KafkaUnavailable(f"no Kafka broker accepts connections at {self.bootstrap_servers}")

    async def check(self) -> str | None:
        """None when Kafka takes connections and the producer is up, else why not."""
        try:
            await asyncio.to_thread(self._probe)
            await asyncio.to_thread(self._connect)
        except KafkaUnavailable as e:
            return str(e)
        return None

    # ------------------------------------------------------------ producing

    async def send_batch(self, topic: str, records: Sequence[tuple[bytes, bytes]]
                         ) -> list[BaseException | None]:
        """Produce ``(key, value)`` records; per record None (acknowledged) or the error.

        Raises KafkaUnavailable, with nothing sent, when the broker is known to be down.
        """
        if not records:
            return []
        if self._suspect:
            await asyncio.to_thread(self._probe)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        results: list = [_UNANSWERED] * len(records)
        pending = [len(records)]
        counter_lock = threading.Lock()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def finished(i: int, exc: BaseException | None) -> None:
            results[i] = exc
            with counter_lock:
                pending[0] -= 1
                last = pending[0] == 0
            if last:
                loop.call_soon_threadsafe(resolve)

        def send_all() -> None:
            producer = self._connect()
            n = len(records)
            for i, (key, value) in enumerate(records):
                try:
                    future = producer.send(topic, key=key, value=value)
                except KafkaTimeoutError as e:
                    # No metadata within max_block_ms: the rest would wait just as long.
                    for j in range(i, n):
                        finished(j, e)
                    return
                except Exception as e:  # noqa: BLE001 - reported per record
                    finished(i, e)
                    continue
                future.add_callback(lambda _md, i=i: finished(i, None))
                future.add_errback(lambda exc, i=i: finished(i, exc))

        started = time.perf_counter()
        try:
            await asyncio.to_thread(send_all)
        except KafkaUnavailable:
            self._suspect = True
            raise
        try:
            # The client expires records after its delivery timeout; the margin
            # only covers scheduling.
            await asyncio.wait_for(asyncio.shield(done), self._delivery_timeout_ms / 1000 + 5)
        except TimeoutError:
            for i, r in enumerate(results):
                if r is _UNANSWERED:
                    results[i] = KafkaTimeoutError("no acknowledgement in time")
        elapsed = time.perf_counter() - started
        if self._on_latency is not None:
            self._on_latency(elapsed)
        failures = [r for r in results if r is not None]
        self._suspect = bool(failures)
        if failures:
            # After a failed batch (expired records after a broker restart included)
            # kafka-python's idempotent producer can stay in a state it never leaves
            # (sequence numbers, producer epoch) and time out forever while the broker
            # is fine: start afresh on the next batch.
            await self._reset(failures[0])
        return results

    async def _reset(self, reason: BaseException) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            log.warning("recreating the kafka producer", extra={"error": f"{type(reason).__name__}: {reason}"})
            await asyncio.to_thread(producer.close, 1)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.close, 5)
