"""Replication on a real three-broker KRaft cluster (``LYSSNA_KAFKA_BROKERS=3`` through
scripts/infra.sh): the topics Lyssna creates get three replicas and
``min.insync.replicas=2`` without anyone setting it, and an acknowledged record
survives ``kill -9`` of a broker; one dev broker keeps one replica."""

import asyncio
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError

from lyssna.common.config import ConfigError, load_settings
from lyssna.common.kafka_admin import ensure_topics
from tests.helpers.kafka_io import delete_kafka_leftovers, wait_for

pytestmark = pytest.mark.integration


def layout(bootstrap: str, topics: list[str]) -> dict[str, tuple[set[int], str]] | None:
    """Topic -> (replica counts of its partitions, its min.insync.replicas); None
    while a broker does not know a topic yet."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        replicas = {t["name"]: {len(p["replica_nodes"]) for p in t["partitions"]} for t in admin.describe_topics(topics)}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics],
                                         config_filter="all")["topic"]
        return {t: (replicas[t], configs[t]["min.insync.replicas"]["value"]) for t in topics}
    except (KeyError, KafkaError):
        return None
    finally:
        admin.close()


def in_sync(bootstrap: str, topic: str) -> list[int]:
    """The ISR size of each partition of ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return [len(p["isr_nodes"]) for t in admin.describe_topics([topic]) for p in t["partitions"]]
    finally:
        admin.close()


def leader_of_partition_0(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return next(p["leader_id"] for t in admin.describe_topics([topic])
                    for p in t["partitions"] if p["partition_index"] == 0)
    finally:
        admin.close()


async def declare(counter) -> list[str]:
    """Create the counting app's own topics the way Faust does when it starts."""
    await counter.app.producer.start()
    try:
        for topic in (counter.table.changelog_topic, counter.mentions):
            await topic.maybe_declare()
    finally:
        await counter.app.producer.stop()
    return [counter.table.changelog_topic.get_topic_name(), counter.mentions_topic]


def settings_for(bootstrap: str, unique_id: str):
    return load_settings(None, env={
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "LYSSNA_ALERTS_APP_ID": f"test-{unique_id}-alerts",
        **{f"LYSSNA_TOPIC_{k.upper()}": f"test.{unique_id}.{k}" for k in
           ("posts_raw", "posts_classified", "alerts_events", "deadletter")}})


def test_topics_get_three_replicas_and_two_in_sync_on_three_brokers(kafka_cluster, unique_id):
    from lyssna.alerts.counts import MentionCounter

    bootstrap = kafka_cluster.bootstrap_servers
    settings = settings_for(bootstrap, unique_id)
    names = list(settings.kafka.topics.model_dump().values())
    try:
        ensure_topics(bootstrap, names, **settings.kafka.topic_layout())
        # Waited for only while the brokers' metadata catches up: a wrong layout never matches.
        wait_for(lambda: layout(bootstrap, names) == {n: ({3}, "2") for n in names}, timeout=30,
                 what="three replicas and min.insync.replicas=2 on every topic")
        # Faust's topics: the counts changelog and the mentions topic, declared as the counting app does.
        counter = MentionCounter(settings, on_counted=lambda org: None, save_sample=None, on_deadletter=lambda: None)
        faust_topics = asyncio.run(declare(counter))
        wait_for(lambda: layout(bootstrap, faust_topics) == {n: ({3}, "2") for n in faust_topics}, timeout=30,
                 what="three replicas and min.insync.replicas=2 on Faust's topics")
    finally:
        delete_kafka_leftovers(bootstrap, unique_id)


def test_one_dev_broker_keeps_one_replica(infra, unique_id):
    settings = settings_for(infra.bootstrap_servers, unique_id)
    names = [settings.kafka.topics.posts_raw]
    try:
        ensure_topics(infra.bootstrap_servers, names, **settings.kafka.topic_layout())
        assert layout(infra.bootstrap_servers, names) == {names[0]: ({1}, "1")}
    finally:
        delete_kafka_leftovers(infra.bootstrap_servers, unique_id)


def test_a_replication_factor_the_cluster_cannot_give_names_the_setting_and_the_fix(infra, unique_id):
    # The production config (3 replicas) against one dev broker: the services exit 2 with this.
    names = [f"test.{unique_id}.rf3"]
    with pytest.raises(ConfigError) as e:
        ensure_topics(infra.bootstrap_servers, names, replication_factor=3, min_insync_replicas=2)
    message = str(e.value)
    assert "kafka.replication_factor is 3" in message and "1 broker(s)" in message
    assert "LYSSNA_KAFKA_REPLICATION_FACTOR" in message and names[0] in message


def test_acknowledged_records_survive_kill_9_of_a_broker(kafka_cluster, unique_id):
    bootstrap = kafka_cluster.bootstrap_servers
    settings = settings_for(bootstrap, unique_id)
    topic = settings.kafka.topics.posts_raw
    sent: list[bytes] = []

    def produce(n: int) -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=20, request_timeout_ms=15_000)
        try:
            for _ in range(n):
                value = f"post-{len(sent)}".encode()
                producer.send(topic, key=value, value=value).get(timeout=60)  # acknowledged by 2+ replicas
                sent.append(value)
        finally:
            producer.close()

    try:
        ensure_topics(bootstrap, [topic], **settings.kafka.topic_layout())
        wait_for(lambda: in_sync(bootstrap, topic) == [3, 3, 3], what="every partition in sync on 3 brokers")
        produce(30)
        victim = leader_of_partition_0(bootstrap, topic)
        kafka_cluster.kill(victim)
        assert "2 of 3 brokers running" in kafka_cluster.status()
        produce(30)  # two replicas left: min.insync.replicas=2 still accepts writes

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"test-{unique_id}-reader",
                                 auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000)
        seen: list[bytes] = []
        try:
            deadline = time.monotonic() + 120
            while len(seen) < len(sent) and time.monotonic() < deadline:
                seen.extend(record.value for record in consumer)
        finally:
            consumer.close()
        assert sorted(seen) == sorted(sent)
        kafka_cluster.up()  # starts only the killed node again
        assert "running (3 brokers" in kafka_cluster.status()
    finally:
        kafka_cluster.up()  # the killed broker back, for the next test
        delete_kafka_leftovers(bootstrap, unique_id)
