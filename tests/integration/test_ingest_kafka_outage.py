"""Kafka down -> 503 and nothing accepted; Kafka back -> accepted again, in the
same running app. Uses a private broker on its own port (started and stopped
with scripts/infra.sh), never the shared one."""

import asyncio
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.helpers.ingest_support import AUTH, atopic_ids, pushed_id, running_app

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _pick_ports() -> int:
    for _ in range(200):
        port = random.randrange(20_000, 40_000)
        if _free(port) and _free(port + 1):   # broker and controller listeners
            return port
    raise RuntimeError("no two adjacent free ports")


class PrivateKafka:
    def __init__(self, port: int):
        self.port = port
        self.env = {**os.environ, "LYSSNA_KAFKA_PORT": str(port),
                    "LYSSNA_KAFKA_CONTROLLER_PORT": str(port + 1)}

    async def _infra(self, *args: str) -> None:
        await asyncio.to_thread(subprocess.run, [str(ROOT / "scripts" / "infra.sh"), *args, "kafka"],
                                env=self.env, cwd=ROOT, check=True)

    async def up(self) -> None:
        await self._infra("up")

    async def down(self) -> None:
        await self._infra("down")

    def remove_data(self) -> None:
        home = ROOT / ".local" / "kafka"
        for p in (home / f"data-{self.port}", home / f"data-{self.port}.log"):
            shutil.rmtree(p, ignore_errors=True)
        (home / f"server-{self.port}.properties").unlink(missing_ok=True)


def posts(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}{i}", "text": f"Fjällhem {prefix} {i}"} for i in range(n)]


async def test_kafka_outage_is_503_and_recovery_needs_no_restart(settings, infra):
    kafka = PrivateKafka(_pick_ports())
    bootstrap = f"127.0.0.1:{kafka.port}"
    s = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})})
    topic = s.kafka.topics.posts_raw
    r = aioredis.Redis.from_url(infra.redis_url)
    seen_key = f"{s.redis.key_prefix}ingest:seen:"
    try:
        async with running_app(s, delivery_timeout_s=5) as (_, client):
            # 1. No broker at all (as at a start-up before Kafka).
            resp = await client.post("/v1/posts", json=posts("a", 5), headers=AUTH)
            assert resp.status_code == 503 and resp.json()["unavailable"] == "kafka"
            assert {x["status"] for x in resp.json()["results"]} == {"rejected"}
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["kafka"] == "down"
            assert ready.json()["checks"]["redis"] == "ok"
            assert await r.exists(*[seen_key + pushed_id(f"a{i}") for i in range(5)]) == 0

            # 2. The broker comes up: the same app accepts, no restart.
            await kafka.up()
            assert (await client.get("/readyz")).status_code == 200
            resp = await client.post("/v1/posts", json=posts("a", 5), headers=AUTH)
            assert resp.status_code == 200 and resp.json()["accepted"] == 5

            # 3. The broker stops while the producer is connected: 503, nothing accepted.
            await kafka.down()
            for _ in range(2):  # the first waits out the delivery timeout, the next fails fast
                resp = await client.post("/v1/posts", json=posts("b", 5), headers=AUTH)
                assert resp.status_code == 503, resp.text
                assert {x["status"] for x in resp.json()["results"]} == {"rejected"}
            assert await r.exists(*[seen_key + pushed_id(f"b{i}") for i in range(5)]) == 0

            # 4. Back again: what was refused is accepted now, what was accepted is a duplicate.
            await kafka.up()
            assert sorted(await atopic_ids(bootstrap, topic)) == [pushed_id(f"a{i}") for i in range(5)]
            resp = await client.post("/v1/posts", json=posts("b", 5) + posts("a", 5), headers=AUTH)
            assert resp.status_code == 200, resp.text
            assert [x["status"] for x in resp.json()["results"]] == ["accepted"] * 5 + ["duplicate"] * 5

        ids = await atopic_ids(bootstrap, topic)
        assert sorted(ids) == sorted(pushed_id(f"{p}{i}") for p in "ab" for i in range(5))
    finally:
        await r.aclose()
        await kafka.down()
        kafka.remove_data()
