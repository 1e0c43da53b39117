"""``kafka.replication_factor`` / ``min_insync_replicas``: ``auto`` decided from the
broker count, numbers kept, impossible combinations refused with the key and the fix."""

import pytest

from lyssna.common.config import ConfigError, load_settings
from lyssna.common.kafka_admin import auto_replication, resolve_replication


@pytest.mark.parametrize("brokers, expected", [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_auto_is_three_copies_two_in_sync_from_three_brokers_on(brokers, expected):
    assert auto_replication(brokers) == expected


def test_numbers_are_kept_without_asking_the_cluster():
    # Nothing listens on this address: a question to the cluster would fail.
    assert resolve_replication("127.0.0.1:1", 3, 2) == (3, 2)
    assert resolve_replication("127.0.0.1:1", "2", "1") == (2, 1)


class _Cluster:
    def __init__(self, brokers: int):
        self.brokers = brokers

    def describe_cluster(self):
        return {"brokers": [{"broker_id": i} for i in range(self.brokers)]}


def test_auto_asks_the_cluster_and_mixes_with_a_number():
    assert resolve_replication("unused", admin=_Cluster(3)) == (3, 2)
    assert resolve_replication("unused", "auto", 1, admin=_Cluster(3)) == (3, 1)
    assert resolve_replication("unused", 2, "auto", admin=_Cluster(3)) == (2, 2)
    assert resolve_replication("unused", 1, "auto", admin=_Cluster(3)) == (1, 1)
    with pytest.raises(ValueError, match="kafka.min_insync_replicas .*Fix"):
        resolve_replication("unused", "auto", 2, admin=_Cluster(1))


def test_settings_default_to_auto_and_read_numbers_from_the_environment():
    assert load_settings(None, env={}).kafka.topic_layout()["replication_factor"] == "auto"
    kafka = load_settings(None, env={"LYSSNA_KAFKA_REPLICATION_FACTOR": "3",
                                     "LYSSNA_KAFKA_MIN_INSYNC_REPLICAS": "2"}).kafka
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)


@pytest.mark.parametrize("value", ["0", "three", "-1"])
def test_a_bad_replica_count_names_the_key_and_the_fix(value):
    with pytest.raises(ConfigError, match=r"kafka.replication_factor.*write auto, or a whole number"):
        load_settings(None, env={"LYSSNA_KAFKA_REPLICATION_FACTOR": value})
