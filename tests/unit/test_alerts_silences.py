"""Silences: matchers plus a time range."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from lyssna.alerts.silences import Silence, event_labels, is_silenced, silenced_by
from lyssna.common.contracts import AlertEvent

UTC = timezone.utc
T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)


def event(**kw):
    base = dict(event_id="evt_1", alert_id="alr_1", state="firing", rule="negative-buzz", org="Acme Robotics",
                topic="employee_satisfaction", sentiment="negative", lang=None,
                window_start=T0, window_end=T0 + H, count=5)
    base.update(kw)
    return AlertEvent(**base)


def silence(matchers, start=T0, end=T0 + 2 * H, sid="s1"):
    return Silence(id=sid, matchers=matchers, starts_at=start, ends_at=end, created_by="anna", comment="deploy")


def test_exact_match_and_time_range_is_half_open():
    s = silence({"rule": "negative-buzz", "org": "Acme Robotics"})
    assert not is_silenced(event(), [s], T0 - timedelta(seconds=1))
    assert is_silenced(event(), [s], T0)
    assert is_silenced(event(), [s], T0 + 2 * H - timedelta(microseconds=1))
    assert not is_silenced(event(), [s], T0 + 2 * H)


def test_every_matcher_must_match():
    s = silence({"rule": "negative-buzz", "org": "Globex"})
    assert not is_silenced(event(), [s], T0 + H)


def test_regex_matchers_are_anchored():
    assert is_silenced(event(), [silence({"org=~": "Acme.*"})], T0)
    assert not is_silenced(event(), [silence({"org=~": "Acme"})], T0)  # no partial match
    assert is_silenced(event(), [silence({"rule=~": "negative-(buzz|spike)", "state=~": "firing|resolved"})], T0)


def test_missing_labels_are_empty_strings():
    assert event_labels(event())["lang"] == ""
    assert is_silenced(event(), [silence({"lang": ""})], T0)
    assert not is_silenced(event(lang="sv"), [silence({"lang": ""})], T0)


def test_state_matcher_can_silence_only_resolutions():
    s = silence({"state": "resolved"})
    assert not is_silenced(event(), [s], T0)
    assert is_silenced(event(state="resolved"), [s], T0)


def test_silenced_by_names_the_first_active_match():
    expired = silence({"org": "Acme Robotics"}, start=T0 - 3 * H, end=T0 - H, sid="old")
    other = silence({"org": "Globex"}, sid="other")
    hit = silence({"topic": "employee_satisfaction"}, sid="hit")
    assert silenced_by(event(), [expired, other, hit], T0).id == "hit"
    assert silenced_by(event(), [expired, other], T0) is None
    assert not is_silenced(event(), [], T0)


def test_naive_times_are_utc():
    s = Silence(id="s", matchers={"org": "Acme Robotics"}, starts_at=datetime(2025, 3, 1, 10),
                ends_at=datetime(2025, 3, 1, 11), created_by="anna")
    assert s.starts_at == T0 and is_silenced(event(), [s], T0)


@pytest.mark.parametrize("matchers,msg", [
    ({}, "at least 1"),
    ({"organisation": "Acme"}, "unknown label 'organisation'"),
    ({"org=~": "Acme("}, "invalid regular expression"),
])
def test_invalid_matchers_are_refused(matchers, msg):
    with pytest.raises(ValidationError, match=msg):
        silence(matchers)


def test_end_must_follow_start():
    with pytest.raises(ValidationError, match="ends_at must be after starts_at"):
        silence({"org": "Acme"}, start=T0, end=T0)


def test_silence_roundtrips_as_json():
    s = silence({"org=~": "Acme.*"})
    assert Silence.model_validate_json(s.model_dump_json()) == s
