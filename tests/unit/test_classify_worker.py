"""Pure decisions of the classify stream worker: readiness, stall clock, retry waits, reasons."""

from datetime import timedelta

import pytest

from lyssna.classify.service import StreamProgress, backoff, budget_reason, failure_reason, stream_state

STALL = 120.0


@pytest.mark.parametrize("agent,failed,lag,quiet_s,state", [
    ("running", False, 0, 0.0, "ok"),
    ("running", False, 0, 3600.0, "ok"),        # idle: nothing to do is not a stall
    ("running", False, 500, 30.0, "ok"),        # behind but moving
    ("running", False, 1, STALL + 1, "stalled"),
    ("running", False, 1, STALL, "ok"),         # exactly at the limit is not yet a stall
    ("starting", False, 9, STALL + 1, "starting"),
    ("stopped", False, 0, 0.0, "stopped"),
    ("running", True, 0, 0.0, "stopped"),       # failed: the agent is parked, not working
])
def test_stream_state(agent, failed, lag, quiet_s, state):
    assert stream_state(agent=agent, failed=failed, lag=lag, quiet_s=quiet_s, stall_after_s=STALL) == state


def test_stall_clock_starts_when_records_arrive_not_at_the_last_batch():
    p = StreamProgress(since=0.0)
    p.progressed(10.0)                    # a batch, then a quiet hour with lag 0
    p.observed_lag(0, 3600.0)
    p.observed_lag(40, 3615.0)            # records arrive
    assert p.lag == 40 and p.since == 3600.0
    p.progressed(3616.0)
    assert p.since == 3616.0
    p.observed_lag(7, 4000.0)             # lag seen without progress keeps the clock
    assert p.since == 3616.0


def test_backoff_doubles_from_the_first_wait():
    assert [backoff(timedelta(seconds=1), n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(timedelta(milliseconds=100), 2) == pytest.approx(0.2)


def test_reasons_carry_no_post_text():
    text = "hemligt Acme \ud800 " * 3
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        reason = failure_reason(e)
    assert reason == "classification failed: UnicodeEncodeError"
    assert budget_reason(timedelta(seconds=10)) == "exceeded the time budget of 10 s"
    assert budget_reason(timedelta(milliseconds=1500)) == "exceeded the time budget of 1.5 s"
