"""The pure stages of a delivery attempt: the gate before sending and what an answer settles."""

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.alerts.delivery import Sent, Verdict, gate, settle
from lyssna.alerts.retry import Outcome, RetrySchedule
from lyssna.alerts.silences import Silence
from lyssna.alerts.store import DeliveryStatus
from lyssna.common.contracts import AlertEvent

T0 = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
S = timedelta(seconds=1)
# No jitter: the waits below are exact.
SCHEDULE = RetrySchedule([0 * S, 1 * S, 1 * S], jitter=0)


def event(org="Acme") -> AlertEvent:
    return AlertEvent(event_id="evt_1", alert_id="alr_1", state="firing", rule="r", org=org,
                      window_start=T0, window_end=T0 + 60 * S, count=3)


def silence(org="Acme") -> Silence:
    return Silence(id="s1", matchers={"org": org}, starts_at=T0, ends_at=T0 + 3600 * S, created_by="test")


DISABLED = {"hook": {"reason": "receiver answered 410 Gone on attempt 1"}}


def test_the_gate_lets_through_an_event_for_a_known_enabled_unsilenced_webhook():
    assert gate(event(), "hook", {"hook"}, {}, [silence("Globex")], T0) is None


@pytest.mark.parametrize("ev, hook, disabled, silences, status, reason", [
    (None, "hook", {}, [], DeliveryStatus.failed, "the alert event is no longer stored"),
    (event(), "gone", {}, [], DeliveryStatus.failed, "no webhook named 'gone' in the configuration"),
    (event(), "hook", DISABLED, [], DeliveryStatus.disabled, "webhook 'hook' is disabled: receiver answered 410"),
    (event(), "hook", {}, [silence()], DeliveryStatus.silenced, "silenced by s1"),
    # An operator's silence is what the record says, whatever state the endpoint is in.
    (event(), "hook", DISABLED, [silence()], DeliveryStatus.silenced, "silenced by s1"),
])
def test_the_gate_stops_what_must_not_be_sent(ev, hook, disabled, silences, status, reason):
    verdict = gate(ev, hook, {"hook"}, disabled, silences, T0)
    assert verdict.status is status and verdict.reason.startswith(reason)
    assert verdict.silence_id == ("s1" if status is DeliveryStatus.silenced else None)
    assert verdict.dead_letter == (status is DeliveryStatus.failed)


def test_retry_after_on_429_sets_the_next_attempt_later_than_the_schedule():
    asked = Sent.answer(429, {"Retry-After": "120"}, T0)
    plain = Sent.answer(429, {}, T0)
    assert settle(asked, number=1, made=1, schedule=SCHEDULE).retry_at == T0 + 120 * S
    assert settle(plain, number=1, made=1, schedule=SCHEDULE).retry_at == T0 + 1 * S


def test_retry_after_as_an_http_date_on_503_counts_from_the_answer():
    sent = Sent.answer(503, {"retry-after": "Sat, 01 Mar 2025 10:05:00 GMT"}, T0)
    verdict = settle(sent, number=1, made=1, schedule=SCHEDULE)
    assert verdict.status is DeliveryStatus.retrying and verdict.retry_at == T0 + 300 * S


def test_retry_after_on_a_500_is_not_a_back_off_request():
    sent = Sent.answer(500, {"Retry-After": "120"}, T0)
    assert sent.retry_after is None
    assert settle(sent, number=1, made=1, schedule=SCHEDULE).retry_at == T0 + 1 * S


def test_answers_settle_the_delivery():
    assert settle(Sent.answer(204, {}, T0), number=1, made=1, schedule=SCHEDULE) == Verdict(DeliveryStatus.delivered)
    gone = settle(Sent.answer(410, {}, T0), number=2, made=2, schedule=SCHEDULE)
    assert (gone.status, gone.disable_webhook, gone.dead_letter) == (DeliveryStatus.disabled, True, False)
    assert gone.reason == "receiver answered 410 Gone on attempt 2"
    refused = settle(Sent.answer(400, {}, T0), number=1, made=1, schedule=SCHEDULE)
    assert (refused.status, refused.dead_letter) == (DeliveryStatus.failed, True)
    assert refused.reason == "refused (last: HTTP 400)"


def test_the_last_attempt_of_the_schedule_gives_up_with_the_last_answer():
    # A redelivery starts a new schedule: attempt 5 is the third of this one.
    dead = settle(Sent.answer(503, {"Retry-After": "1"}, T0), number=5, made=3, schedule=SCHEDULE)
    assert (dead.status, dead.retry_at, dead.dead_letter) == (DeliveryStatus.dead, None, True)
    assert dead.reason == "gave up after 3 attempts (last: HTTP 503)"
    lost = settle(Sent(Outcome.retry, T0, error="ConnectError: refused"), number=3, made=3, schedule=SCHEDULE)
    assert lost.reason == "gave up after 3 attempts (last: ConnectError: refused)"
