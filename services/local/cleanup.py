"""Removing what one local run left behind: its Kafka topics and Redis keys.

The demo, the benchmarks and the end-to-end tests each run in a namespace of
their own (topic and key prefixes), so cleaning up is deleting that namespace.
"""

from __future__ import annotations


def drop_namespace(bootstrap: str, redis_url: str, topic_prefixes: tuple[str, ...],
                   key_prefix: str, *, client_id: str = "lyssna-cleanup") -> tuple[int, int]:
    """Delete topics starting with any of ``topic_prefixes`` (ours and Faust's) and
    Redis keys starting with ``key_prefix``; returns (topics, keys) deleted.
    Old consumer groups are left to the broker's offset retention: their topics
    are gone and the next run uses new group names."""
    import redis
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        topics = [t for t in admin.list_topics() if t.startswith(topic_prefixes)]
        if topics:
            admin.delete_topics(topics, timeout_ms=30_000)
    finally:
        admin.close()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{key_prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    finally:
        client.close()
    return len(topics), len(keys)
