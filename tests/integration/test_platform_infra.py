"""The platform's promise: real Kafka (both clients) and real Redis on loopback."""

import asyncio
import uuid

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from lyssna.common.contracts import Post

pytestmark = pytest.mark.integration


def test_kafka_python_roundtrip(infra, topics):
    posts = [Post(id=f"p{i}", source="test", text=f"Acme {i}") for i in range(20)]
    producer = KafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all",
                             enable_idempotence=True)
    for p in posts:
        producer.send(topics.posts_raw, key=p.id.encode(), value=p.to_bytes())
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topics.posts_raw, bootstrap_servers=infra.bootstrap_servers,
                             auto_offset_reset="earliest", group_id=f"g-{uuid.uuid4().hex}",
                             consumer_timeout_ms=15_000)
    got = []
    for msg in consumer:
        got.append(Post.from_bytes(msg.value))
        if len(got) == len(posts):
            break
    consumer.close()
    assert sorted(p.id for p in got) == sorted(p.id for p in posts)


def test_aiokafka_roundtrip(infra, topics):
    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers, acks="all",
                                    enable_idempotence=True)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topics.posts_classified, key=f"k{i}".encode(),
                                             value=f"v{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topics.posts_classified, bootstrap_servers=infra.bootstrap_servers,
                                    auto_offset_reset="earliest", group_id=f"g-{uuid.uuid4().hex}")
        await consumer.start()
        got = set()
        try:
            async with asyncio.timeout(30):
                async for msg in consumer:
                    got.add(msg.value)
                    if len(got) == 10:
                        break
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == {f"v{i}".encode() for i in range(10)}


def test_redis_read_write_with_isolated_prefix(infra, redis_prefix):
    r = redis.Redis.from_url(infra.redis_url)
    assert r.set(f"{redis_prefix}seen:p1", 1, nx=True, ex=60)
    assert not r.set(f"{redis_prefix}seen:p1", 1, nx=True, ex=60)
    assert 0 < r.ttl(f"{redis_prefix}seen:p1") <= 60
    r.close()


def test_each_test_gets_its_own_topics(topics):
    assert len({topics.posts_raw, topics.posts_classified, topics.alerts_events, topics.deadletter}) == 4
    assert topics.posts_raw.startswith("test.")
