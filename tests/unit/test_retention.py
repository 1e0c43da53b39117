"""The retention section: what it sets on topics, how drift is found, the old key's migration."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from lyssna.common.config import ConfigError, Settings, load_settings
from lyssna.common.kafka_admin import (
    MAX_SEGMENT_MS, RetentionDrift, _remember_drift, find_drift, longest_stay_ms, topic_configs,
)
from lyssna.common.metrics import ServiceMetrics

DAY_MS = 86_400_000


def _load(tmp_path, text: str) -> Settings:
    path = tmp_path / "lyssna.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_every_lyssna_topic_gets_the_retention_of_what_it_holds(tmp_path):
    s = _load(tmp_path, "retention:\n  raw_posts: 1d\n  classified_posts: 2d\n  dead_letters: 4d\n"
                        "  sample_texts: 5d\nkafka:\n  topics:\n    posts_raw: my.raw\n")
    layout = s.kafka.topic_layout()
    assert layout["retention_ms"] == {"my.raw": DAY_MS, "lyssna.posts.classified": 2 * DAY_MS,
                                      "lyssna.deadletter": 4 * DAY_MS, "lyssna.alerts.events": 5 * DAY_MS}
    # A copy (as services and tests make) keeps it.
    assert s.model_copy(update={"api_keys": ["k"]}).kafka.topic_layout() == layout


def test_a_retention_under_a_minute_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"lyssna.yaml:2: retention.raw_posts: .*at least 1m"):
        _load(tmp_path, "retention:\n  raw_posts: 0s\n")


def test_old_history_retention_is_taken_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        s = _load(tmp_path, "alerts:\n  history_retention: 12d\n")
    assert s.retention.alert_history == timedelta(days=12)
    assert "move its value to retention.alert_history" in caplog.text


def test_old_and_new_history_retention_that_disagree_stop_start_up(tmp_path):
    with pytest.raises(ConfigError, match=r"alerts.history_retention: .*disagree. Fix: remove alerts.history_retention"):
        _load(tmp_path, "alerts:\n  history_retention: 12d\nretention:\n  alert_history: 20d\n")


def test_created_topics_carry_retention_and_a_segment_no_longer_than_a_day():
    assert topic_configs(3 * DAY_MS, 2) == {"min.insync.replicas": "2", "retention.ms": str(3 * DAY_MS),
                                            "segment.ms": str(MAX_SEGMENT_MS)}
    assert topic_configs(60_000, 1)["segment.ms"] == "60000"
    assert topic_configs(None, 1) == {"min.insync.replicas": "1"}
    assert longest_stay_ms(3 * DAY_MS) == 4 * DAY_MS


def test_drift_is_a_topic_that_keeps_longer_or_forever():
    configured = {"a": 1000, "b": 1000, "c": 1000, "absent": 1000}
    drift = find_drift(configured, {"a": 1000, "b": 5000, "c": -1})
    assert drift == [RetentionDrift("b", 1000, 5000), RetentionDrift("c", 1000, -1)]
    assert [d.excess_seconds for d in drift] == [4.0, float("inf")]


def test_drift_shows_in_every_services_metrics_until_fixed():
    metrics = ServiceMetrics("ingest")
    _remember_drift(["t.drifting"], [RetentionDrift("t.drifting", 1000, 61_000)])
    try:
        assert metrics.value("lyssna_kafka_topic_retention_drift_seconds",
                             service="ingest", topic="t.drifting") == 60.0
        _remember_drift(["t.drifting"], [])  # checked again, now within the configured retention
        assert "t.drifting" not in metrics.render().decode()
    finally:
        _remember_drift(["t.drifting"], [])
