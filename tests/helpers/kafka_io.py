"""Small I/O helpers every integration test shares: ports, topics, polling and
services run as real processes (exactly as `make up` runs them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from lyssna.local.stack import ManagedService, free_port  # noqa: F401  (free_port re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) pairs and wait until Kafka has all of them."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30.0) -> list[tuple[bytes, bytes]]:
    """Everything on the topic right now, as (key, value), read up to the end
    offsets taken at the start (so it neither stops early nor waits for idleness)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000)
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while not parts:
            parts = consumer.partitions_for_topic(topic)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions")
            if not parts:
                consumer.topics()  # asks the broker again instead of trusting cached metadata
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[bytes, bytes]] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, **_ignored) -> list[bytes]:
    """The values of every record now in the topic."""
    return [value for _, value in read_topic(bootstrap, topic)]


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in the topic (sum of end offsets): cheap enough to poll tightly."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        consumer.close()


async def eventually(check: Callable[[], Awaitable[Any]] | Callable[[], Any], *, timeout: float = 60,
                     interval: float = 0.25, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def wait_for(check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.25,
             what: str = "condition") -> Any:
    """The synchronous twin of :func:`eventually`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class ServiceProcess(ManagedService):
    """``lyssna serve <service>`` as a child process with its own environment: the
    stack's :class:`ManagedService` (same start, kill and reaping), named by port so
    a test can run several replicas of one service side by side."""

    def __init__(self, service: str, env: Mapping[str, str], *, port: int, log_dir: Path,
                 config: Path | None = None):
        name = f"{service}-{port}"
        super().__init__(service, port=port, env={**os.environ, **env}, config=config,
                         pidfile=log_dir / f"{name}.pid", logfile=log_dir / f"{name}.log")

    @property
    def log_path(self) -> Path:
        return self.logfile

    @property
    def proc(self) -> subprocess.Popen | None:
        return self._proc

    def start(self) -> "ServiceProcess":
        super().start()
        return self

    def ready(self) -> bool:
        if not self.running():
            raise AssertionError(f"{self.service} exited{self._how_it_ended()}; log:\n{self.log_tail()}")
        return self.readiness()[0]

    def wait_ready(self, timeout: float = 120) -> "ServiceProcess":
        super().wait_ready(timeout)
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); the exit status, None if never started."""
        super().stop(timeout)
        return self._proc.returncode if self._proc else None

    def log_tail(self, lines: int = 40) -> str:
        return super().log_tail(lines)


def delete_kafka_leftovers(bootstrap_servers: str, marker: str) -> None:
    """Delete the topics (Faust changelogs included) and consumer groups whose
    name holds ``marker``: a test's unique id. Best effort: a broker that is
    gone (a fault-injection test) has nothing left to clean."""
    from kafka.errors import KafkaError

    from lyssna.local.cleanup import drop_kafka

    try:
        drop_kafka(bootstrap_servers, lambda name: marker in name, groups=True,
                   client_id="lyssna-test-cleanup", raise_errors=False, timeout_ms=10_000)
    except KafkaError:
        pass
