"""A private three-broker KRaft cluster on loopback, for the tests where replication
matters (a broker killed mid-run must not lose an acknowledged record).

Started through scripts/infra.sh with ``LYSSNA_KAFKA_BROKERS=3``, exactly as
``LYSSNA_KAFKA_BROKERS=3 make infra`` does, on ports of its own so the shared dev
broker on 9092 is never touched. Node i listens on ``base + 2(i-1)`` and its
controller on the port above.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "scripts" / "infra.sh"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(length: int, attempts: int = 200) -> int:
    """The first of ``length`` consecutive loopback ports that are all free now.
    Below Linux's ephemeral range (32768+), so no outgoing connection takes one
    between this check and the brokers' bind."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(20_000, 32_000, 2)
        if all(_free(base + k) for k in range(length)):
            return base
    raise RuntimeError(f"no {length} consecutive free loopback ports found")


@dataclass
class KafkaCluster:
    base_port: int
    brokers: int = 3

    @classmethod
    def start(cls, brokers: int = 3) -> "KafkaCluster":
        cluster = cls(free_port_run(2 * brokers), brokers)
        try:
            cluster.up()
        except BaseException:
            cluster.destroy()  # the nodes that did start, and the data
            raise
        return cluster

    @property
    def env(self) -> dict[str, str]:
        return {"LYSSNA_KAFKA_PORT": str(self.base_port), "LYSSNA_KAFKA_BROKERS": str(self.brokers)}

    def port(self, node: int) -> int:
        return self.base_port + 2 * (node - 1)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.port(i)}" for i in range(1, self.brokers + 1))

    def infra(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(INFRA), *args], env={**os.environ, **(self.env if env is None else env)},
                              cwd=ROOT, capture_output=True, text=True, timeout=180)

    def up(self) -> None:
        """Start the nodes that do not run (all at first; after a kill, the killed one)."""
        done = self.infra("up", "kafka")
        if done.returncode != 0:
            raise RuntimeError(f"infra.sh up kafka failed:\n{done.stderr}")

    def status(self) -> str:
        """infra.sh's kafka line, asked with the port only: the cluster's record gives its size."""
        done = self.infra("status", env={"LYSSNA_KAFKA_PORT": str(self.base_port), "LYSSNA_KAFKA_BROKERS": ""})
        return next(line for line in done.stdout.splitlines() if line.startswith("kafka:"))

    def pid(self, node: int) -> int:
        return int((ROOT / ".local" / "run" / f"kafka-{self.base_port}-node{node}.pid").read_text())

    def kill(self, node: int) -> None:
        """kill -9 of one broker (and its controller): no controlled shutdown."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def destroy(self) -> None:
        """Stop every node and remove the cluster's data: nothing of it is left."""
        self.infra("down", "kafka")
        shutil.rmtree(ROOT / ".local" / "kafka" / f"cluster-{self.base_port}", ignore_errors=True)
