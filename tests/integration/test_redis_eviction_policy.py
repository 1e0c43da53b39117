"""Ingest and alerts refuse a Redis that may evict their state (real redis-server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from lyssna.common.config import ConfigError
from lyssna.common.redis_policy import refuse_evicting_redis
from lyssna.local.stack import free_port, port_open

pytestmark = pytest.mark.integration


@pytest.fixture
def evicting_redis(tmp_path):
    """A private redis-server on loopback with an LRU eviction policy."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing; `make system` installs it")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--maxmemory", "64mb",
                             "--maxmemory-policy", "allkeys-lru"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and proc.poll() is None, "private redis-server did not start"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_an_evicting_redis_is_refused_with_the_fix(evicting_redis):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(evicting_redis)
    try:
        with pytest.raises(ConfigError) as err:
            await refuse_evicting_redis(client, "alerts")
    finally:
        await client.aclose()
    msg = str(err.value)
    assert "'allkeys-lru'" in msg and "maxmemory-policy noeviction" in msg


async def test_the_test_redis_with_noeviction_passes(infra):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(infra.redis_url)
    try:
        await refuse_evicting_redis(client, "ingest")  # Redis' default policy: no error
    finally:
        await client.aclose()


@pytest.mark.parametrize("service", ["ingest", "alerts"])
def test_the_service_process_does_not_start_on_an_evicting_redis(service, evicting_redis, settings, tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "REDIS_URL": evicting_redis,
           "LYSSNA_REDIS_PREFIX": settings.redis.key_prefix, "LYSSNA_API_KEY": "test-key",
           f"LYSSNA_{service.upper()}_PORT": str(free_port()), "LYSSNA_ALERTS_APP_ID": f"evict-{tmp_path.name}",
           **{f"LYSSNA_TOPIC_{k.upper()}": v for k, v in settings.kafka.topics.model_dump().items()}}
    env.pop("LYSSNA_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "lyssna.cli", "serve", service], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "maxmemory-policy" in done.stderr and "noeviction" in done.stderr
