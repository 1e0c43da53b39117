"""Which replica judges which organization: the partition of its mentions."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from lyssna.alerts.ownership import Ownership, partition_for_org

ORGS = ["Acme", "Globex", "Initech", "Nordvik Energi", "Kvarnby Bank", "Åkerö Sågverk", "Müller GmbH", "x", ""]


@pytest.mark.parametrize("partitions", [1, 3, 4, 12, 64])
def test_partition_is_the_one_kafkas_default_partitioner_gives_the_org_key(partitions):
    """Mentions written before the router named the partition went where the producer's
    default partitioner put them; the owner asked about an org must be the same one."""
    every = list(range(partitions))
    for org in ORGS:
        assert partition_for_org(org, partitions) == DefaultPartitioner()(org.encode(), every, every)


def test_every_org_is_owned_by_exactly_one_of_the_replicas_splitting_the_partitions():
    replicas = [Ownership.of(4, {0, 3}), Ownership.of(4, {1}), Ownership.of(4, {2})]
    for org in ORGS:
        assert sum(r.owns(org) for r in replicas) == 1, org


def test_a_replica_without_partitions_owns_nothing_and_one_with_all_owns_everything():
    assert not any(Ownership.of(3, ()).owns(org) for org in ORGS)
    assert all(Ownership.of(3, range(3)).owns(org) for org in ORGS)


def test_ownership_changes_compare_by_value():
    """The engine logs a new assignment when it differs from the last one it saw."""
    assert Ownership.of(3, [0, 1]) == Ownership.of(3, {1, 0})
    assert Ownership.of(3, [0, 1]) != Ownership.of(3, [0])
    assert Ownership.of(3, [2, 0]).describe() == "[0, 2] of 3"


def test_no_partitions_is_refused():
    with pytest.raises(ValueError):
        partition_for_org("Acme", 0)
