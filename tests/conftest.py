"""Test harness: real Kafka and Redis on loopback, isolated per test.

Integration tests ask for ``infra``; it makes sure the broker and Redis answer,
starting them through scripts/infra.sh (the same script `make infra` uses) when
they do not, and stops at the end only what it started. Each test gets its own
topic names and Redis key prefix so tests never see each other's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Loopback only, in this process and in every process a test starts (see
# tests/netguard/loopback_only.py): set up before any test imports a client.
_NETGUARD = ROOT / "tests" / "netguard"
sys.path.insert(0, str(_NETGUARD))
import loopback_only  # noqa: E402

from tests.helpers.kafka_io import delete_kafka_leftovers  # noqa: E402

os.environ.setdefault(loopback_only.ENV_LOG, os.path.join(tempfile.mkdtemp(prefix="lyssna-netguard-"), "refused.log"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_NETGUARD), os.environ.get("PYTHONPATH")) if p)
loopback_only.install()
# Ingest pseudonymizes authors by default and refuses to start without a key
# (lyssna.common.pseudonyms); every test and the services it starts share this one.
os.environ.setdefault("LYSSNA_AUTHOR_KEY", "test:lyssna-tests-only-author-key-0123456789")


@pytest.fixture(autouse=True)
def loopback_only_network():
    """Fail a test that tried to reach anything but loopback, even when the
    code under test swallowed the refusal and carried on."""
    before = len(loopback_only.violations())
    yield
    refused = loopback_only.violations()[before:]
    if refused:
        pytest.fail("the test tried to connect outside loopback:\n  " + "\n  ".join(refused), pytrace=False)
KAFKA_PORT = int(os.environ.get("LYSSNA_KAFKA_PORT", "9092"))
REDIS_PORT = int(os.environ.get("LYSSNA_REDIS_PORT", "6379"))


def infra_script(*args: str, capture: bool = False) -> str:
    done = subprocess.run([str(ROOT / "scripts" / "infra.sh"), *args], check=True, cwd=ROOT,
                          capture_output=capture, text=True)
    return done.stdout or ""


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    redis_url: str


@pytest.fixture(scope="session")
def infra():
    """Kafka and Redis that this project started: those already running are
    reused, the others started (and stopped at the end). infra.sh refuses a
    port held by a process it did not start, so tests never write into some
    other Kafka or Redis that happens to listen on the same port."""
    running = {line.split(":", 1)[0] for line in infra_script("status", capture=True).splitlines()
               if line.endswith(": running") or ": running " in line}
    started = [c for c in ("kafka", "redis") if c not in running]
    if started:
        infra_script("up", *started)
    yield Infra(f"127.0.0.1:{KAFKA_PORT}", f"redis://127.0.0.1:{REDIS_PORT}/0")
    if started and not os.environ.get("LYSSNA_KEEP_INFRA"):
        infra_script("down", *started)


@pytest.fixture(scope="session")
def kafka_cluster():
    """A private three-broker Kafka (``LYSSNA_KAFKA_BROKERS=3`` through infra.sh) on
    free loopback ports, for the tests where replication matters; stopped and its
    data removed at the end. A test that kills a broker starts it again (``up``)."""
    from tests.helpers.kafka_cluster import KafkaCluster

    cluster = KafkaCluster.start()
    yield cluster
    cluster.destroy()


@dataclass(frozen=True)
class TopicNames:
    posts_raw: str
    posts_classified: str
    alerts_events: str
    deadletter: str

    def as_env(self) -> dict[str, str]:
        return {f"LYSSNA_TOPIC_{k.upper()}": v for k, v in self.__dict__.items()}


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topics(infra, unique_id) -> TopicNames:
    from lyssna.common.kafka_admin import ensure_topics

    t = TopicNames(*(f"test.{unique_id}.{name}" for name in
                     ("posts.raw", "posts.classified", "alerts.events", "deadletter")))
    ensure_topics(infra.bootstrap_servers, t.__dict__.values(), partitions=3)
    yield t
    # The test's topics, and the changelogs and groups of apps whose id holds unique_id.
    delete_kafka_leftovers(infra.bootstrap_servers, unique_id)


@pytest.fixture
def redis_prefix(infra, unique_id):
    import redis

    prefix = f"test:{unique_id}:"
    yield prefix
    client = redis.Redis.from_url(infra.redis_url)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def settings(infra, topics, redis_prefix):
    """Settings wired to this test's topics and key prefix (no config file)."""
    from lyssna.common.config import load_settings

    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url,
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": "test-key", **topics.as_env()}
    return load_settings(None, env=env)
