"""Topic provisioning shared by the services and the test harness."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def ensure_topics(bootstrap_servers: str, names: Iterable[str], partitions: int = 3,
                  timeout_ms: int = 30_000, *, replication_factor: int = 1, min_insync_replicas: int = 1) -> None:
    """Create the topics that do not exist yet; existing ones are left alone.

    ``replication_factor`` and ``min_insync_replicas`` come from the ``kafka``
    settings (``KafkaSettings.topic_layout``): 1/1 fits one dev broker; with
    three brokers, 3/2 keeps every acknowledged record when one broker dies.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="lyssna-admin",
                             request_timeout_ms=timeout_ms)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
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
