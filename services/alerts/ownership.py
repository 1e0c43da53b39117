"""Which organizations this alerts replica judges: those of its assigned partitions.

Mentions are re-keyed by organization into the app's ``-mentions`` topic, so
each organization lives on one partition, and Kafka's consumer group (Faust's
assignor) gives each partition to exactly one replica. That replica counts the
organization (the Faust table's changelog partition is the mention's
partition) and is the only one that may judge its rules: a replica that judged
an organization it does not count would see zero mentions and resolve an alert
that the owner holds firing.

:func:`partition_for_org` is Kafka's default partitioner (murmur2 of the key,
as the Java client and aiokafka compute it), named once so that the router
that writes a mention and the engine that asks "is this organization mine?"
cannot disagree, and so that mentions written before this module existed
(placed by the producer's default partitioner) stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from aiokafka.partitioner import murmur2


def partition_for_org(org: str, partitions: int) -> int:
    """The mentions partition of ``org`` among ``partitions`` (Kafka's default partitioner)."""
    if partitions < 1:
        raise ValueError("a topic has at least one partition")
    return (murmur2(org.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Ownership:
    """A replica's assigned mentions partitions, as of one rebalance."""

    partitions: int
    owned: frozenset[int]

    @classmethod
    def of(cls, partitions: int, owned: Collection[int]) -> "Ownership":
        return cls(partitions, frozenset(owned))

    def owns(self, org: str) -> bool:
        return partition_for_org(org, self.partitions) in self.owned

    def describe(self) -> str:
        return f"{sorted(self.owned)} of {self.partitions}"
