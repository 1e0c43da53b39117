from datetime import timedelta
from pathlib import Path

import pytest

from lyssna.common.config import ConfigError, load_settings
from lyssna.common.durations import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "lyssna.example.yaml"

BASE = """\
organizations:
  - name: Acme Robotics
    aliases: [Acme]
webhooks:
  - name: hr
    url: https://hooks.example.com/x
rules:
  - name: r1
    org: "*"
    window: 1h
    condition: {type: count, threshold: 5}
    notify: [hr]
"""


def write(tmp_path, text):
    p = tmp_path / "lyssna.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_loads():
    s = load_settings(EXAMPLE, env={})
    assert s.organizations[0].name == "Nordvik Energi"
    assert s.rules[0].notify == ["hr-webhook"]


def test_base_config_loads(tmp_path):
    s = load_settings(write(tmp_path, BASE), env={})
    assert s.rules[0].window == timedelta(hours=1)


def test_unknown_key_names_file_line_key_and_fix(tmp_path):
    p = write(tmp_path, BASE.replace("    window: 1h", "    windw: 1h"))
    with pytest.raises(ConfigError) as e:
        load_settings(p, env={})
    msg = str(e.value)
    assert f"{p}:10: rules[0].windw" in msg
    assert "remove the key or correct its spelling" in msg
    assert "window" in msg  # the allowed keys are listed


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r":1: organisations: .*allowed keys here: kafka"):
        load_settings(write(tmp_path, "organisations: []\n" + BASE), env={})


def test_wrong_type_names_key_and_fix(tmp_path):
    p = write(tmp_path, BASE.replace("threshold: 5", "threshold: many"))
    with pytest.raises(ConfigError) as e:
        load_settings(p, env={})
    msg = str(e.value)
    assert "rules[0].condition.threshold" in msg
    assert "write a whole number" in msg
    assert f"{p}:11" in msg


def test_bad_duration(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\[0\]\.window: .*not a duration; write it like 30s"):
        load_settings(write(tmp_path, BASE.replace("window: 1h", "window: an hour")), env={})


def test_rule_naming_unknown_webhook(tmp_path):
    p = write(tmp_path, BASE.replace("notify: [hr]", "notify: [hr, teams]"))
    with pytest.raises(ConfigError) as e:
        load_settings(p, env={})
    msg = str(e.value)
    assert "rules[0].notify[1]" in msg and "unknown webhook 'teams'" in msg
    assert "add a webhook named 'teams'" in msg
    assert f"{p}:" in msg


def test_rule_naming_unknown_org(tmp_path):
    with pytest.raises(ConfigError, match="unknown organization 'Nobody'.*use '\\*' or one of"):
        load_settings(write(tmp_path, BASE.replace('org: "*"', "org: Nobody")), env={})


def test_unknown_condition_type(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\[0\]\.condition.*'type'"):
        load_settings(write(tmp_path, BASE.replace("type: count", "type: average")), env={})


def test_yaml_syntax_error_has_line(tmp_path):
    with pytest.raises(ConfigError, match=r"lyssna.yaml:\d+:\d+: YAML syntax error"):
        load_settings(write(tmp_path, BASE + "  - [unclosed\n"), env={})


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found. Fix: point LYSSNA_CONFIG"):
        load_settings("/nonexistent/lyssna.yaml", env={})


def test_env_overrides_infrastructure(tmp_path):
    s = load_settings(write(tmp_path, BASE), env={
        "KAFKA_BOOTSTRAP_SERVERS": "k:1", "REDIS_URL": "redis://r:2/0", "LYSSNA_INGEST_PORT": "9999",
        "LYSSNA_API_KEY": "a, b", "LYSSNA_CONFIG": "ignored-when-path-given"})
    assert s.kafka.bootstrap_servers == "k:1"
    assert s.redis.url == "redis://r:2/0"
    assert s.ingest.port == 9999
    assert s.api_keys == ["a", "b"]


def test_bad_env_override_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest.port: .*whole number"):
        load_settings(write(tmp_path, BASE), env={"LYSSNA_INGEST_PORT": "eighty"})


def test_api_keys_never_serialized(tmp_path):
    s = load_settings(write(tmp_path, BASE), env={"LYSSNA_API_KEY": "s3cret"})
    assert "s3cret" not in s.model_dump_json()
    assert "s3cret" not in repr(s)


def test_duplicate_names(tmp_path):
    text = BASE + "  - name: r1\n    condition: {type: count, threshold: 1}\n"
    with pytest.raises(ConfigError, match=r"rules\[1\]\.name: duplicate name 'r1'"):
        load_settings(write(tmp_path, text), env={})


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800),
                                          ("200ms", 0.2), (45, 45)])
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "5x", "m5", "-1s", "1h 2", True])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_roundtrip():
    for text in ("30s", "5m", "6h", "7d", "200ms", "0ms"):
        assert format_duration(parse_duration(text)) == text
    assert parse_duration(format_duration(parse_duration("1m30s"))) == parse_duration("90s")
