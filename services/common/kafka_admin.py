"""Topic provisioning shared by the services and the test harness.

The topics Lyssna creates carry the ``retention`` section's ``retention.ms`` (and a
``segment.ms`` no longer than it: Kafka deletes whole segments, so a record lives
until its segment is closed *and* retention has passed). A topic that already
exists is left alone (someone may have chosen its settings on purpose) but one that
keeps records longer than configured is reported: a warning in the log and the
``lyssna_kafka_topic_retention_drift_seconds`` metric of every service in the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from .config import ConfigError

log = logging.getLogger(__name__)

# A segment rolls at least daily, so a short retention is not held up by a week-long open segment.
MAX_SEGMENT_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class RetentionDrift:
    """A topic that keeps records longer than configured (``actual_ms`` -1: forever)."""

    topic: str
    configured_ms: int
    actual_ms: int

    @property
    def excess_seconds(self) -> float:
        return float("inf") if self.actual_ms < 0 else (self.actual_ms - self.configured_ms) / 1000


def segment_ms(retention_ms: int) -> int:
    return max(1, min(retention_ms, MAX_SEGMENT_MS))


def topic_configs(retention_ms: int | None, min_insync_replicas: int) -> dict[str, str]:
    configs = {"min.insync.replicas": str(min_insync_replicas)}
    if retention_ms is not None:
        configs |= {"retention.ms": str(retention_ms), "segment.ms": str(segment_ms(retention_ms))}
    return configs


def find_drift(configured_ms: Mapping[str, int], actual_ms: Mapping[str, int]) -> list[RetentionDrift]:
    """Topics whose ``retention.ms`` is longer than configured (-1 means forever)."""
    out = []
    for topic, want in configured_ms.items():
        have = actual_ms.get(topic)
        if have is not None and (have < 0 or have > want):
            out.append(RetentionDrift(topic, want, have))
    return out


def longest_stay_ms(retention_ms: int) -> int:
    """How long a record written now may stay at most: its segment's roll time plus retention."""
    return retention_ms + segment_ms(retention_ms) if retention_ms >= 0 else -1


# Drift seen by ensure_topics in this process, read by every service's /metrics
# (lyssna.common.metrics): classify, ingest and alerts all call ensure_topics.
_drift: dict[str, RetentionDrift] = {}
_drift_lock = threading.Lock()


def known_drift() -> list[RetentionDrift]:
    with _drift_lock:
        return list(_drift.values())


def _remember_drift(checked: Iterable[str], drift: list[RetentionDrift]) -> None:
    with _drift_lock:
        for topic in checked:
            _drift.pop(topic, None)
        _drift.update({d.topic: d for d in drift})


def describe_retention(admin: KafkaAdminClient, topics: Iterable[str]) -> dict[str, int]:
    """Each topic's effective ``retention.ms`` (its own, else the broker's default)."""
    topics = list(topics)
    if not topics:
        return {}
    answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=["retention.ms"])
                                     for t in topics], config_filter="all")
    out = {}
    for topic, configs in answer.get("topic", {}).items():
        value = configs.get("retention.ms", {}).get("value")
        if value is not None:
            out[topic] = int(value)
    return out


def topic_retention(bootstrap_servers: str, topics: Iterable[str], timeout_ms: int = 10_000) -> dict[str, int]:
    """``retention.ms`` of each existing topic in ``topics`` (for the erasure report)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                             request_timeout_ms=timeout_ms)
    try:
        existing = set(admin.list_topics())
        return describe_retention(admin, [t for t in dict.fromkeys(topics) if t in existing])
    finally:
        admin.close()


def wait_for_topics(bootstrap_servers: str, names: Iterable[str], timeout_s: float = 30) -> None:
    """Return once every partition of each topic in ``names`` has a leader.

    A consumer group that joins before its topics are in the metadata is assigned
    nothing for them until its next metadata refresh (five minutes by default), so
    a service waits here after creating a topic it is about to consume.
    Raises ``TimeoutError`` naming the topics still without a leader."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                             request_timeout_ms=int(timeout_s * 1000))
    try:
        _wait_for_leaders(admin, names, timeout_s)
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, names: Iterable[str], timeout_s: float) -> None:
    wanted = list(dict.fromkeys(names))
    deadline = time.monotonic() + timeout_s
    while True:
        pending = sorted(t["name"] for t in admin.describe_topics(wanted)
                         if t["error_code"] or not t["partitions"] or any(p["leader_id"] < 0 for p in t["partitions"]))
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics missing or without a leader after {timeout_s:.0f} s: {', '.join(pending)}. "
                               f"Check that every broker in kafka.bootstrap_servers is up")
        time.sleep(0.2)


def auto_replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for ``auto``: 3 and 2 from three
    brokers on, so one broker can die without losing an acknowledged write or
    stopping writes; on fewer, as many copies as there are brokers, 1 in sync."""
    replicas = max(1, min(brokers, 3))
    return replicas, 2 if replicas >= 3 else 1


def resolve_replication(bootstrap_servers: str, replication_factor: int | str = "auto",
                        min_insync_replicas: int | str = "auto", *, admin: KafkaAdminClient | None = None,
                        timeout_ms: int = 10_000) -> tuple[int, int]:
    """The ``kafka.replication_factor`` / ``kafka.min_insync_replicas`` settings as
    numbers: ``auto`` is decided from the brokers the cluster has now
    (:func:`auto_replication`). Asks the cluster only for ``auto``; ``admin`` reuses
    an open client."""
    if replication_factor != "auto" and min_insync_replicas != "auto":
        return int(replication_factor), int(min_insync_replicas)
    own = admin is None
    if own:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                                 request_timeout_ms=timeout_ms)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
    finally:
        if own:
            admin.close()
    auto_rf, auto_isr = auto_replication(brokers)
    rf = auto_rf if replication_factor == "auto" else int(replication_factor)
    isr = min(auto_isr, rf) if min_insync_replicas == "auto" else int(min_insync_replicas)
    if isr > rf:
        raise ValueError(f"kafka.min_insync_replicas ({isr}) is larger than the replication factor ({rf}) "
                         f"chosen for {brokers} broker(s): no write could ever succeed. Fix: set "
                         f"kafka.min_insync_replicas to auto or at most {rf}")
    return rf, isr


def ensure_topics(bootstrap_servers: str, names: Iterable[str], partitions: int = 3,
                  timeout_ms: int = 30_000, *, replication_factor: int | str = "auto",
                  min_insync_replicas: int | str = "auto",
                  retention_ms: Mapping[str, int] | None = None) -> list[RetentionDrift]:
    """Create the topics that do not exist yet; existing ones are left alone, and
    those among them that keep records longer than ``retention_ms`` says are returned
    (and logged, and shown in the metrics).

    ``replication_factor`` and ``min_insync_replicas`` come from the ``kafka``
    settings (``KafkaSettings.topic_layout``); ``auto`` (the default) is 1/1 on one
    dev broker and 3/2 from three brokers on, which keeps every acknowledged
    record when one broker dies (:func:`resolve_replication`).
    ``retention_ms`` (topic -> ms, from the ``retention`` section) is set on the
    topics created here.
    """
    retention_ms = dict(retention_ms or {})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                             request_timeout_ms=timeout_ms)
    try:
        wanted = list(dict.fromkeys(names))
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            replication_factor, min_insync_replicas = resolve_replication(
                bootstrap_servers, replication_factor, min_insync_replicas, admin=admin)
            try:
                admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replication_factor,
                                              topic_configs=topic_configs(retention_ms.get(n), min_insync_replicas))
                                     for n in missing], timeout_ms=timeout_ms)
            except TopicAlreadyExistsError:
                pass  # another service created it between our list and create
            except InvalidReplicationFactorError:
                brokers = len(admin.describe_cluster()["brokers"])
                raise ConfigError(
                    f"kafka.replication_factor is {replication_factor} but the cluster at {bootstrap_servers} has "
                    f"{brokers} broker(s), so topics {', '.join(missing)} cannot be created. Fix: start at least "
                    f"{replication_factor} brokers, or set kafka.replication_factor (LYSSNA_KAFKA_REPLICATION_FACTOR) "
                    f"to auto or at most {brokers}") from None
            _wait_for_leaders(admin, missing, timeout_ms / 1000)
            log.info("created topics", extra={"topics": missing, "replication_factor": replication_factor,
                                              "min_insync_replicas": min_insync_replicas})
        checked = [n for n in wanted if n in existing and n in retention_ms]
        drift = find_drift({n: retention_ms[n] for n in checked}, describe_retention(admin, checked))
        _remember_drift(checked, drift)
        for d in drift:
            log.warning("topic keeps records longer than the retention section says; lower its retention.ms "
                        "(kafka-configs.sh --alter --entity-type topics --add-config retention.ms=...)",
                        extra={"topic": d.topic, "configured_ms": d.configured_ms, "actual_ms": d.actual_ms})
        return drift
    finally:
        admin.close()
