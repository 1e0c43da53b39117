"""A new alerts deployment counts from its first assignment: Faust's internal topics
(the mentions copy and the counts changelog) exist before the consumer group joins.
When they did not, the first join assigned the only replica no mentions partition and
it judged nothing until the next metadata refresh, five minutes later."""

from __future__ import annotations

import asyncio

import faust.topics
import pytest
from kafka.admin import KafkaAdminClient

from lyssna.common.kafka_admin import ensure_topics

from tests.helpers.alerts_harness import alerts_settings, running_alerts

pytestmark = pytest.mark.integration


async def test_a_fresh_app_owns_every_partition_once_ready(settings, monkeypatch):
    # The mentions topic shows up in the brokers' metadata a while after its creation
    # was answered, as on a loaded host (where CI saw the race): the creation is
    # acknowledged at once and lands two seconds later.
    declare = faust.topics.Topic.declare
    landing: list[asyncio.Task] = []

    async def late_declare(topic):
        if not topic.get_topic_name().endswith("-mentions"):
            return await declare(topic)

        async def land():
            await asyncio.sleep(2)
            await asyncio.to_thread(ensure_topics, settings.kafka.bootstrap_servers, topic.topics,
                                    partitions=topic.partitions)
        landing.append(asyncio.create_task(land()))

    monkeypatch.setattr(faust.topics.Topic, "declare", late_declare)
    for _ in range(2):  # each round a new app id: new internal topics, a new group
        landing.clear()
        s = alerts_settings(settings)
        async with running_alerts(s) as svc:
            owned = svc.counter.ownership()
            internal = [svc.counter.mentions_topic, *svc.counter.table.changelog_topic.topics]
        assert owned.owned == frozenset(range(s.kafka.partitions)), \
            f"the only replica of {s.alerts.app_id} owns {sorted(owned.owned)} of {s.kafka.partitions} partitions"
        admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers, client_id="test-first-assignment")
        try:
            described = {t["name"]: t for t in admin.describe_topics(internal)}
        finally:
            admin.close()
        assert all(len(described[name]["partitions"]) == s.kafka.partitions for name in internal), described
        await asyncio.gather(*landing)
