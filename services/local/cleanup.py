"""Removing what one local run left behind: its Kafka topics and Redis keys.

The demo, the benchmarks and the end-to-end tests each run in a namespace of
their own (topic and key prefixes), so cleaning up is deleting that namespace.
"""

from __future__ import annotations

from collections.abc import Callable


def drop_kafka(bootstrap: str, match: Callable[[str], bool], *, groups: bool = False,
               client_id: str = "lyssna-cleanup", raise_errors: bool = True, timeout_ms: int = 30_000) -> int:
    """Delete the topics (ours and Faust's) whose name ``match``es and, with
    ``groups``, the consumer groups too; returns how many topics were deleted."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=timeout_ms)
    try:
        if groups:
            names = [g["group_id"] for g in admin.list_groups() if match(g["group_id"])]
            if names:
                admin.delete_groups(names)
        topics = [t for t in admin.list_topics() if match(t)]
        if topics:
            admin.delete_topics(topics, timeout_ms=timeout_ms, raise_errors=raise_errors)
    finally:
        admin.close()
    return len(topics)


def drop_namespace(bootstrap: str, redis_url: str, topic_prefixes: tuple[str, ...],
                   key_prefix: str, *, client_id: str = "lyssna-cleanup") -> tuple[int, int]:
    """Delete topics starting with any of ``topic_prefixes`` (ours and Faust's) and
    Redis keys starting with ``key_prefix``; returns (topics, keys) deleted.
    Old consumer groups are left to the broker's offset retention: their topics
    are gone and the next run uses new group names."""
    import redis

    topics = drop_kafka(bootstrap, lambda name: name.startswith(topic_prefixes), client_id=client_id)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{key_prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    finally:
        client.close()
    return topics, len(keys)
