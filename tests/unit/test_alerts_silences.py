"""Silences: matchers plus a time range."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from lyssna.alerts.silences import (
    MAX_VALUE_CHARS, Silence, event_labels, has_nested_quantifier, matcher_problems, silenced_by,
)
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
    assert silenced_by(event(), [s], T0 - timedelta(seconds=1)) is None
    assert silenced_by(event(), [s], T0) is not None
    assert silenced_by(event(), [s], T0 + 2 * H - timedelta(microseconds=1)) is not None
    assert silenced_by(event(), [s], T0 + 2 * H) is None


def test_every_matcher_must_match():
    s = silence({"rule": "negative-buzz", "org": "Globex"})
    assert silenced_by(event(), [s], T0 + H) is None


def test_regex_matchers_are_anchored():
    assert silenced_by(event(), [silence({"org=~": "Acme.*"})], T0) is not None
    assert silenced_by(event(), [silence({"org=~": "Acme"})], T0) is None  # no partial match
    both = silence({"rule=~": "negative-(buzz|spike)", "state=~": "firing|resolved"})
    assert silenced_by(event(), [both], T0) is not None


def test_missing_labels_are_empty_strings():
    assert event_labels(event())["lang"] == ""
    assert silenced_by(event(), [silence({"lang": ""})], T0) is not None
    assert silenced_by(event(lang="sv"), [silence({"lang": ""})], T0) is None


def test_state_matcher_can_silence_only_resolutions():
    s = silence({"state": "resolved"})
    assert silenced_by(event(), [s], T0) is None
    assert silenced_by(event(state="resolved"), [s], T0) is not None


def test_silenced_by_names_the_first_active_match():
    expired = silence({"org": "Acme Robotics"}, start=T0 - 3 * H, end=T0 - H, sid="old")
    other = silence({"org": "Globex"}, sid="other")
    hit = silence({"topic": "employee_satisfaction"}, sid="hit")
    assert silenced_by(event(), [expired, other, hit], T0).id == "hit"
    assert silenced_by(event(), [expired, other], T0) is None
    assert silenced_by(event(), [], T0) is None


def test_naive_times_are_utc():
    s = Silence(id="s", matchers={"org": "Acme Robotics"}, starts_at=datetime(2025, 3, 1, 10),
                ends_at=datetime(2025, 3, 1, 11), created_by="anna")
    assert s.starts_at == T0 and silenced_by(event(), [s], T0) is not None


@pytest.mark.parametrize("matchers,msg", [
    ({}, "at least 1"),
    ({"organisation": "Acme"}, "unknown label 'organisation'"),
    ({"org=~": "Acme("}, "invalid regular expression"),
    ({"org=~": "(A)\\1"}, "invalid regular expression"),      # a backreference: RE2 has none
    ({"org=~": "(?!Globex).*"}, "invalid regular expression"),  # nor lookaround
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


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x+x+)+y", "(a*)*", "((ab)*c)+", "(?:a|b+){2,}", "(\\w+\\s?)*$",
                                     "([(]+)+"])
def test_a_repeated_group_containing_a_quantifier_is_refused(pattern):
    assert has_nested_quantifier(pattern)
    assert "repeated group contains a quantifier" in matcher_problems({"org=~": pattern})[0]


@pytest.mark.parametrize("pattern", ["Acme.*", "Acme|Globex", "negative-(buzz|spike)", "(a+)?", "(ab)+",
                                     "[+*(]+", "\\(a+\\)+", "(a){2}", "(a+){1}", "a{2,}b+"])
def test_patterns_without_nested_repetition_are_accepted(pattern):
    assert not has_nested_quantifier(pattern)
    assert matcher_problems({"org=~": pattern}) == []


def test_values_and_patterns_have_a_length_limit():
    long = "A" * (MAX_VALUE_CHARS + 1)
    assert [p.split(":")[0] for p in matcher_problems({"org": long, "rule=~": long})] == \
        ["matcher 'org'", "matcher 'rule=~'"]
    assert matcher_problems({"org": "A" * MAX_VALUE_CHARS}) == []


def test_matching_runs_on_re2():
    # A flag in the middle of a pattern is RE2 syntax (Python's re refuses it): the
    # engine that matches is the linear-time one.
    s = silence({"org=~": "Acme (?i)ROBOTICS"})
    assert silenced_by(event(org="Acme Robotics"), [s], T0) is not None
    assert silenced_by(event(org="ACME Robotics"), [s], T0) is None
