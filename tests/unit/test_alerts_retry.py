"""Retry schedule and the meaning of receivers' answers."""

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given, strategies as st

from lyssna.alerts.retry import (
    DEFAULT_DELAYS, Outcome, RetrySchedule, classify_exception, classify_response,
    parse_retry_after, retry_after_header,
)
from lyssna.common.urlsafety import UnsafeWebhookURL
from lyssna.common.config import AlertsSettings

S = timedelta(seconds=1)


def test_default_schedule_matches_config_default_and_docs():
    assert list(DEFAULT_DELAYS) == AlertsSettings().retry_schedule
    sched = RetrySchedule()
    assert sched.delays[0] == timedelta(0)  # the first attempt goes out immediately
    assert sched.max_attempts == 9
    assert sched.total == timedelta(seconds=38555)  # ~10.7 h, as the docstring says


def test_attempt_counting_and_exhaustion():
    sched = RetrySchedule([timedelta(0), 5 * S, 30 * S], jitter=0)
    assert [sched.next_delay(n) for n in range(3)] == [timedelta(0), 5 * S, 30 * S]
    assert not sched.is_exhausted(2) and sched.is_exhausted(3)
    with pytest.raises(ValueError, match="exhausted"):
        sched.next_delay(3)
    with pytest.raises(ValueError):
        sched.next_delay(-1)


@given(attempt=st.integers(0, 8), seed=st.integers(0, 2**32))
def test_jitter_stays_within_bounds(attempt, seed):
    sched = RetrySchedule()
    base = sched.delays[attempt]
    d = sched.next_delay(attempt, rng=random.Random(seed))
    assert base * 0.9 <= d <= base * 1.1


def test_jitter_spreads_retries():
    sched = RetrySchedule()
    rng = random.Random(1)
    assert len({sched.next_delay(3, rng=rng) for _ in range(20)}) > 1


def test_retry_after_seconds_is_a_floor_and_capped():
    sched = RetrySchedule([timedelta(0), 5 * S], jitter=0.1, max_retry_after=timedelta(hours=1))
    rng = random.Random(0)
    assert sched.next_delay(1, retry_after="120", rng=rng) == 120 * S
    # A shorter Retry-After does not shorten our own schedule.
    assert sched.next_delay(1, retry_after="1", rng=rng) >= 4.5 * S
    assert sched.next_delay(1, retry_after="999999", rng=rng) == timedelta(hours=1)
    # Unreadable values are ignored rather than trusted.
    assert sched.next_delay(1, retry_after="soon", rng=rng) <= 5.5 * S


def test_retry_after_http_date():
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Sat, 01 Mar 2025 12:02:00 GMT", now=now) == 120 * S
    assert parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", now=now) == timedelta(0)
    sched = RetrySchedule([timedelta(0), 5 * S], jitter=0)
    assert sched.next_delay(1, retry_after="Sat, 01 Mar 2025 12:10:00 GMT", now=now) == 600 * S
    assert parse_retry_after(None) is None and parse_retry_after("  ") is None
    assert parse_retry_after("-5") is None


@pytest.mark.parametrize("status,outcome", [
    (200, Outcome.delivered), (202, Outcome.delivered), (204, Outcome.delivered),
    (410, Outcome.disabled),
    (408, Outcome.retry), (425, Outcome.retry), (429, Outcome.retry),
    (500, Outcome.retry), (502, Outcome.retry), (503, Outcome.retry), (504, Outcome.retry),
    (400, Outcome.failed), (401, Outcome.failed), (403, Outcome.failed), (404, Outcome.failed),
    (413, Outcome.failed), (422, Outcome.failed),
    (301, Outcome.failed), (302, Outcome.failed), (307, Outcome.failed),
])
def test_classify_response(status, outcome):
    assert classify_response(status, {}) is outcome


def test_retry_after_only_honoured_on_429_and_503():
    assert retry_after_header(429, {"Retry-After": "7"}) == "7"
    assert retry_after_header(503, {"retry-after": "8"}) == "8"
    assert retry_after_header(500, {"Retry-After": "7"}) is None
    assert retry_after_header(301, {"Retry-After": "7"}) is None
    assert retry_after_header(429, {}) is None


def test_classify_exception():
    req = httpx.Request("POST", "https://example.com")
    assert classify_exception(httpx.ConnectError("refused", request=req)) is Outcome.retry
    assert classify_exception(httpx.ReadTimeout("slow", request=req)) is Outcome.retry
    assert classify_exception(httpx.RemoteProtocolError("reset", request=req)) is Outcome.retry
    assert classify_exception(OSError("dns")) is Outcome.retry
    assert classify_exception(httpx.UnsupportedProtocol("ftp")) is Outcome.failed
    assert classify_exception(UnsafeWebhookURL("private")) is Outcome.failed


def test_outcomes_are_the_metric_labels():
    assert {o.value for o in Outcome} == {"delivered", "retry", "failed", "disabled"}


def test_schedule_validation():
    with pytest.raises(ValueError):
        RetrySchedule([])
    with pytest.raises(ValueError):
        RetrySchedule([-S])
    with pytest.raises(ValueError):
        RetrySchedule(jitter=1.5)
