"""Several replicas of a service as real processes: which organizations land on
which mentions partition, which partitions an alerts replica says it judges,
and how long a handover takes after ``kill -9``.

Shared by the replica tests (tests/integration/test_alerts_replicas.py,
tests/e2e/test_replicated_cluster.py) and the scale-out benchmark
(bench/bench_scaleout.py), so the figure in BENCHMARKS.md is measured the way
the tests check it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, Sequence

from lyssna.alerts.ownership import partition_for_org
from tests.helpers.kafka_io import ServiceProcess, wait_for


def orgs_covering(partitions: int, per_partition: int,
                  name: Callable[[int], str] = lambda i: f"Org {i}") -> dict[int, list[str]]:
    """Organization names spread over every mentions partition: ``per_partition``
    of each, so every alerts replica owns some of them whatever it is assigned."""
    out: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in out.values()):
        org = name(i)
        p = partition_for_org(org, partitions)
        if len(out[p]) < per_partition:
            out[p].append(org)
        i += 1
    return out


_OWNED = re.compile(r"mentions partitions \[([0-9, ]*)\] of (\d+)")


def owned_partitions(log: Path) -> set[int] | None:
    """The partitions an alerts replica said last that it judges (None before it said any)."""
    try:
        found = _OWNED.findall(log.read_text(errors="replace"))
    except FileNotFoundError:
        return None
    if not found:
        return None
    return {int(p) for p in found[-1][0].split(",") if p.strip()}


def wait_alerts_split(procs: Sequence[ServiceProcess], partitions: int, timeout: float = 180) -> None:
    """Until the alerts replicas judge disjoint sets of partitions that cover them
    all (a rebalance has settled); fails at once if one of them died."""
    def split() -> bool:
        owned = [owned_partitions(p.log_path) for p in procs]
        for p in procs:
            p.ready()  # raises if the process exited
        if not all(owned):
            return False
        union: set[int] = set()
        for o in owned:
            if union & o:
                return False
            union |= o
        return union == set(range(partitions))
    wait_for(split, timeout=timeout, interval=0.5, what="the alerts replicas judging their own partitions")


def alerts_handover(killed: ServiceProcess, survivor: ServiceProcess, partitions: int,
                    timeout: float = 180) -> float:
    """``kill -9`` of ``killed``; seconds until ``survivor`` says it judges every partition."""
    killed_at = time.monotonic()
    killed.kill()
    wait_for(lambda: survivor.ready() and owned_partitions(survivor.log_path) == set(range(partitions)),
             timeout=timeout, interval=0.2, what="the survivor judging every partition")
    return time.monotonic() - killed_at


def group_members(bootstrap: str, group: str) -> int:
    """Members of consumer group ``group`` once it is Stable (no rebalance in flight), else 0."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-group-probe")
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    return len(info["members"]) if info["group_state"] == "Stable" else 0


def sources_assigned(log: Path) -> int | None:
    """How many connector sources an ingest replica said last that it runs (None before it said)."""
    last = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if "connector sources assigned" in line:
            try:
                last = json.loads(line).get("sources")
            except ValueError:
                continue
    return last


def connector_owner(procs: Sequence[ServiceProcess], timeout: float = 120) -> ServiceProcess:
    """The one ingest replica that runs the (single) configured source, once the
    assignment has settled: it says 1 and every other replica says 0."""
    def owner() -> ServiceProcess | None:
        said = [sources_assigned(p.log_path) for p in procs]
        for p in procs:
            p.ready()  # raises if the process exited
        if sorted(said, key=lambda x: -1 if x is None else x) != [0] * (len(procs) - 1) + [1]:
            return None
        return procs[said.index(1)]
    return wait_for(owner, timeout=timeout, interval=0.5, what="one ingest replica running the source")
