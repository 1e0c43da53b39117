"""Dedup's two TTLs on a real Redis: a confirmed id is a duplicate until the dedup
TTL runs out, a reservation (a crash between produce and confirm) blocks only
until the short reservation TTL runs out. Redis expires keys itself, so these
tests wait for expiry instead of faking a clock."""

import asyncio

import pytest
import redis.asyncio as aioredis

from lyssna.ingest.dedup import Claim, Dedup

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(infra):
    c = aioredis.Redis.from_url(infra.redis_url)
    yield c
    await c.aclose()


async def until(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_a_confirmed_id_is_a_duplicate_until_the_dedup_ttl_ends(client, redis_prefix):
    dedup = Dedup(client, redis_prefix, ttl_s=2, reservation_ttl_s=60)
    token, claims = await dedup.reserve(["p1"])
    assert claims == [Claim.reserved]
    await dedup.confirm(["p1"])
    assert (await dedup.reserve(["p1"]))[1] == [Claim.duplicate]
    ttl = await client.ttl(dedup.key("p1"))
    assert 0 < ttl <= 2  # the long TTL replaced the reservation's 60 s
    await until(lambda: _gone(client, dedup.key("p1")))
    assert (await dedup.reserve(["p1"]))[1] == [Claim.reserved]  # forgotten: accepted again


async def test_a_reservation_left_by_a_crash_blocks_only_until_its_ttl_ends(client, redis_prefix):
    dedup = Dedup(client, redis_prefix, ttl_s=3600, reservation_ttl_s=2)
    await dedup.reserve(["p2"])  # ... and the process dies before confirm or release
    assert (await dedup.reserve(["p2"]))[1] == [Claim.in_flight]
    assert 0 < await client.ttl(dedup.key("p2")) <= 2
    await until(lambda: _gone(client, dedup.key("p2")))
    assert (await dedup.reserve(["p2"]))[1] == [Claim.reserved]  # the post can be sent again, never lost


async def _gone(client, key: str) -> bool:
    return not await client.exists(key)
