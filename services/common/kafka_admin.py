"""Topic provisioning shared by the services and the test harness."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


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
                  min_insync_replicas: int | str = "auto") -> None:
    """Create the topics that do not exist yet; existing ones are left alone.

    ``replication_factor`` and ``min_insync_replicas`` come from the ``kafka``
    settings (``KafkaSettings.topic_layout``); ``auto`` (the default) is 1/1 on one
    dev broker and 3/2 from three brokers on, which keeps every acknowledged
    record when one broker dies (:func:`resolve_replication`).
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                             request_timeout_ms=timeout_ms)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
        replication_factor, min_insync_replicas = resolve_replication(
            bootstrap_servers, replication_factor, min_insync_replicas, admin=admin)
        try:
            admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=replication_factor,
                                          topic_configs={"min.insync.replicas": str(min_insync_replicas)})
                                 for n in missing], timeout_ms=timeout_ms)
        except TopicAlreadyExistsError:
            pass  # another service created it between our list and create
        log.info("created topics", extra={"topics": missing, "replication_factor": replication_factor,
                                          "min_insync_replicas": min_insync_replicas})
    finally:
        admin.close()
