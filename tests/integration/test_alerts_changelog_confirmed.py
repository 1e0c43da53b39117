"""What a new owner recovers from the counts changelog is what the replica that
counted held, even when Kafka refused some changelog writes on the way (as while a
broker dies and its partitions change leader).

Faust reports a refused changelog write only in a log line and goes on; the count
agent now waits for every write of a mention to be acknowledged and writes the
refused ones again before it moves on (and so before the mention's offset can be
committed)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from tests.helpers.alerts_harness import alerts_settings, classified, produce, running_alerts
from tests.helpers.kafka_io import eventually, read_topic

pytestmark = pytest.mark.integration

POSTS = 6
REFUSED = 4  # the first changelog writes, whatever their keys: counts, seen keys, authors


class RefusingChangelog:
    """The Faust producer, except that Kafka refuses the first ``n`` changelog
    records: their delivery futures fail, as aiokafka's do after its retries."""

    def __init__(self, producer, changelog: str, n: int):
        from aiokafka.errors import KafkaTimeoutError

        self.real, self.changelog, self.left, self.error = producer.send, changelog, n, KafkaTimeoutError
        producer.send = self

    async def __call__(self, topic, *args, **kwargs):
        if topic == self.changelog and self.left > 0:
            self.left -= 1
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(self.error("injected: the broker refused the record"))
            return refused
        return await self.real(topic, *args, **kwargs)


def recovered(records: list[tuple[bytes, bytes | None]]) -> dict:
    """The table a new owner rebuilds from the changelog: last value per key, tombstones delete."""
    table: dict = {}
    for key, value in records:
        if value is None:
            table.pop(json.loads(key), None)
        else:
            table[json.loads(key)] = json.loads(value)
    return table


async def test_refused_changelog_writes_are_written_again_before_the_mention_is_let_go(settings):
    s = alerts_settings(settings)
    async with running_alerts(s) as svc:
        counter = svc.counter
        changelog = counter.table.changelog_topic.get_topic_name()
        refusing = RefusingChangelog(counter.app.producer, changelog, REFUSED)
        posts = [classified("Acme").model_copy(update={"author": f"author-{i % 2}"}) for i in range(POSTS)]
        await asyncio.to_thread(produce, s.kafka.bootstrap_servers, s.kafka.topics.posts_classified, posts)

        start = min(p.created_at for p in posts) - timedelta(minutes=1)
        end = max(p.created_at for p in posts) + timedelta(minutes=1)

        def counted():
            return counter.counts.cells("Acme", start, end).get(("Acme", "*", "negative", "*"), 0)

        await eventually(lambda: counted() == POSTS, timeout=60, what=f"{POSTS} mentions counted")
        assert refusing.left == 0, "the injected refusals were not all hit"
        live = {k: v for k, v in counter.table.items()}
        await eventually(lambda: asyncio.to_thread(lambda: recovered(read_topic(s.kafka.bootstrap_servers,
                                                                                changelog)) == live),
                         timeout=30, what="the changelog to hold what the replica holds")
