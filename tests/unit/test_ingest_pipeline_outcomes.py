"""Every item the pipeline receives ends in exactly one counted outcome, also when
a dependency is down (Redis here, through an in-memory stand-in for dedup)."""

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from lyssna.ingest.metrics import IngestMetrics
from lyssna.ingest.pipeline import Pipeline, Unavailable


class RedisDown:
    async def reserve(self, ids):
        raise RedisConnectionError("connection refused")


async def test_outcomes_add_up_to_what_was_received_while_redis_is_down():
    metrics = IngestMetrics()
    pipeline = Pipeline(dedup=RedisDown(), producer=None, metrics=metrics, topic="posts")
    with pytest.raises(Unavailable):
        await pipeline.ingest_pushed([{"text": "Acme is hiring"}, {"text": ""}, {"text": "Acme again"}], channel="http")
    received = metrics.value("lyssna_ingest_posts_received_total", source="http")
    outcomes = {o: metrics.value("lyssna_ingest_posts_total", source="http", outcome=o) or 0
                for o in ("accepted", "duplicate", "rejected")}
    assert received == 3
    assert outcomes == {"accepted": 0, "duplicate": 0, "rejected": 3}
