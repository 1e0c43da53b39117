"""`make infra` / `make down`: idempotent start, and a stop that leaves nothing of ours.

Uses private ports so the shared broker and Redis of the test session are not touched.
"""

import os
import shutil
import subprocess

import pytest

from tests.helpers.kafka_io import ROOT, free_port

pytestmark = pytest.mark.integration


def infra(env, *args):
    return subprocess.run([str(ROOT / "scripts" / "infra.sh"), *args], env={**os.environ, **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def our_pids(pattern: str, port: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if str(port) in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
            .replace("\0", " ")] if out else []


def test_up_twice_is_harmless_and_down_leaves_nothing():
    kafka_port, redis_port = free_port(), free_port()
    env = {"LYSSNA_KAFKA_PORT": str(kafka_port), "LYSSNA_KAFKA_CONTROLLER_PORT": str(free_port()),
           "LYSSNA_REDIS_PORT": str(redis_port)}
    try:
        first = infra(env, "up", "kafka", "redis")
        assert first.returncode == 0, first.stderr
        kafka_pids = our_pids("kafka.Kafka", kafka_port)
        assert len(kafka_pids) == 1 and our_pids("redis-server", redis_port)
        second = infra(env, "up", "kafka", "redis")
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert our_pids("kafka.Kafka", kafka_port) == kafka_pids  # not restarted, not doubled
    finally:
        down = infra(env, "down", "kafka", "redis")
    assert down.returncode == 0, down.stderr
    assert our_pids("kafka.Kafka", kafka_port) == []
    assert our_pids("redis-server", redis_port) == []
    for leftover in [*(ROOT / ".local" / "kafka").glob(f"*-{kafka_port}*"), ROOT / ".local" / f"redis-{redis_port}"]:
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def test_foreign_process_on_the_port_is_reported_not_killed():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = infra({"LYSSNA_REDIS_PORT": str(port)}, "up", "redis")
        assert result.returncode != 0
        assert f"port {port} is in use by a process this project did not start" in result.stderr
        assert "LYSSNA_REDIS_PORT" in result.stderr
        down = infra({"LYSSNA_REDIS_PORT": str(port)}, "down", "redis")
        assert down.returncode == 0
        s.getsockname()  # still ours: down did not touch it
