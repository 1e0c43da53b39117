"""The pure side of sharing connectors between ingest replicas: every replica
numbers the sources alike, a set of assigned partitions names the sources to
run, and the group's names and timing follow from the settings."""

import pytest

from lyssna.common.config import ConfigError, RssSource, load_settings
from lyssna.ingest.assignment import group_name, group_timing, owned, slots
from lyssna.ingest.connectors.rss import RssConnector


def cursor_key(url: str) -> str:
    return RssConnector(RssSource(type="rss", url=url), "x").cursor_key


def test_replicas_number_the_sources_alike_whatever_the_config_order():
    keys = [cursor_key(f"https://news.example.se/{n}.xml") for n in ("a", "b", "c")]
    assert slots(keys) == slots(reversed(keys)) == slots([keys[1], keys[2], keys[0]])
    assert sorted(slots(keys).values()) == [0, 1, 2]


def test_one_source_configured_twice_is_one_slot():
    key = cursor_key("https://news.example.se/a.xml")
    other = cursor_key("https://news.example.se/b.xml")
    assert slots([key, other, key]) == {min(key, other): 0, max(key, other): 1}


def test_assigned_partitions_name_the_sources_to_run():
    slot_of = {"rss:a": 0, "rss:b": 1, "mastodon:c": 2}
    assert owned(slot_of, [1]) == {"rss:b"}
    assert owned(slot_of, {0, 2}) == {"rss:a", "mastodon:c"}
    assert owned(slot_of, []) == set()
    # A partition beyond the sources (the topic kept partitions of a removed source) is idle.
    assert owned(slot_of, [3, 7]) == set()


def test_every_partition_goes_to_one_replica_so_every_source_runs_once():
    slot_of = slots(f"rss:{i:02d}" for i in range(7))
    replicas = [{0, 3, 6}, {1, 4}, {2, 5}]
    runs = [owned(slot_of, parts) for parts in replicas]
    assert set().union(*runs) == set(slot_of)
    assert sum(len(r) for r in runs) == len(slot_of)


@pytest.mark.parametrize("prefix, group", [
    ("lyssna:", "lyssna.ingest-connectors"),
    ("lyssna:demo:20261201-0201:", "lyssna.demo.20261201-0201.ingest-connectors"),
    ("acme/prod ", "acme.prod.ingest-connectors"),
])
def test_the_group_follows_the_redis_prefix_in_kafka_safe_characters(prefix, group):
    assert group_name(prefix) == group


def test_heartbeats_three_times_per_session():
    assert group_timing(10) == {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 3333}
    assert group_timing(6)["heartbeat_interval_ms"] == 2000


def test_the_session_timeout_and_group_are_settings():
    s = load_settings(None, env={"LYSSNA_INGEST_CONNECTORS_GROUP": "acme-ingest"})
    assert s.ingest.connectors_group == "acme-ingest"
    assert s.ingest.connectors_session_timeout.total_seconds() == 10


def test_a_session_timeout_kafka_refuses_is_a_config_error_naming_the_key(tmp_path):
    config = tmp_path / "lyssna.yaml"
    config.write_text("ingest:\n  connectors_session_timeout: 2h\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"(?s)ingest.connectors_session_timeout.*between 1s and 30m"):
        load_settings(config, env={})
