"""The harness deletes what a test left in Kafka: its topics, its apps'
changelogs and consumer groups (all named with the test's unique id)."""

import time
import uuid

import pytest

from tests.helpers.kafka_io import delete_kafka_leftovers

pytestmark = pytest.mark.integration


def test_topics_and_groups_holding_the_marker_are_deleted_and_others_kept(infra):
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from kafka.admin import KafkaAdminClient

    from lyssna.common.kafka_admin import ensure_topics

    marker, other = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    mine, kept = f"test.{marker}.posts", f"test.{other}.posts"
    ensure_topics(infra.bootstrap_servers, [mine, kept], partitions=1)
    producer = KafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    producer.send(mine, b"x").get(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=infra.bootstrap_servers, group_id=f"app-{marker}-delivery",
                             enable_auto_commit=False)
    consumer.assign([TopicPartition(mine, 0)])
    consumer.commit({TopicPartition(mine, 0): OffsetAndMetadata(1, "", -1)})
    consumer.close()

    delete_kafka_leftovers(infra.bootstrap_servers, marker)

    admin = KafkaAdminClient(bootstrap_servers=infra.bootstrap_servers)
    try:
        deadline = time.monotonic() + 30
        while mine in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)  # topic deletion completes asynchronously on the broker
        topics = admin.list_topics()
        groups = {g["group_id"] for g in admin.list_groups()}
        assert mine not in topics and kept in topics
        assert f"app-{marker}-delivery" not in groups
        admin.delete_topics([kept], raise_errors=False)
    finally:
        admin.close()
