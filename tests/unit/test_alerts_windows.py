"""Event-time window arithmetic."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, strategies as st

from lyssna.alerts.windows import (
    Window, trailing_windows, window_for, window_start,
)

UTC = timezone.utc
H = timedelta(hours=1)
M = timedelta(minutes=1)

times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
sizes = st.integers(1, 7 * 24 * 3600 * 1000).map(lambda ms: timedelta(milliseconds=ms))


def test_tumbling_window_edges_are_half_open():
    assert window_start(datetime(2025, 3, 1, 10, 0, tzinfo=UTC), H) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert window_start(datetime(2025, 3, 1, 10, 59, 59, 999999, tzinfo=UTC), H) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    # Exactly at the end belongs to the next window.
    assert window_start(datetime(2025, 3, 1, 11, 0, tzinfo=UTC), H) == datetime(2025, 3, 1, 11, tzinfo=UTC)
    w = window_for(datetime(2025, 3, 1, 10, 30, tzinfo=UTC), H)
    assert w == Window(datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2025, 3, 1, 11, tzinfo=UTC))
    assert w.contains(w.start) and not w.contains(w.end)


def test_windows_are_aligned_to_the_epoch_in_utc():
    cet = timezone(timedelta(hours=1))
    assert window_start(datetime(2025, 3, 1, 10, 20, tzinfo=cet), 15 * M) == datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    assert window_start(datetime(2025, 3, 1, 10, 20), 15 * M) == datetime(2025, 3, 1, 10, 15, tzinfo=UTC)  # naive = UTC
    assert window_start(datetime(2025, 3, 1, 10, 20, tzinfo=UTC), timedelta(days=1)) == datetime(2025, 3, 1, tzinfo=UTC)


def test_hopping_windows_judge_the_latest_window_containing_the_time():
    ts = datetime(2025, 3, 1, 10, 20, tzinfo=UTC)
    w = window_for(ts, H, 15 * M)
    assert (w.start.strftime("%H:%M"), w.end - w.start) == ("10:15", H) and w.contains(ts)
    # At an exact step boundary the window starting there is the latest.
    edge = datetime(2025, 3, 1, 10, 15, tzinfo=UTC)
    assert window_for(edge, H, 15 * M).start == edge
    # A step that does not divide the size: starts on the 40 s grid from the epoch.
    sec = timedelta(seconds=1)
    ts = datetime(2025, 3, 1, 0, 0, 50, tzinfo=UTC)  # epoch + 1740787250 s, 10 s past a grid point
    assert window_for(ts, 100 * sec, 40 * sec).start == ts - 10 * sec


def test_tumbling_is_hopping_with_step_equal_size():
    ts = datetime(2025, 3, 1, 10, 20, tzinfo=UTC)
    assert window_for(ts, H) == window_for(ts, H, H) == Window(ts.replace(minute=0), ts.replace(minute=0) + H)


def test_invalid_window_parameters():
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        window_start(ts, timedelta(0))
    with pytest.raises(ValueError):
        window_start(ts, H, timedelta(0))
    with pytest.raises(ValueError, match="gaps"):
        window_for(ts, H, 2 * H)


@given(ts=times, size=sizes)
def test_window_start_contains_ts_and_is_idempotent(ts, size):
    start = window_start(ts, size)
    assert start <= ts < start + size
    assert window_start(start, size) == start
    assert window_start(start + size, size) == start + size


@given(ts=times, size=sizes, steps=st.integers(1, 12))
def test_the_latest_hopping_window_contains_ts(ts, size, steps):
    step = size / steps
    assume(step >= timedelta(microseconds=1))
    step = timedelta(microseconds=step // timedelta(microseconds=1))
    w = window_for(ts, size, step)
    assert w.contains(ts) and w.end - w.start == size
    assert w.start + step > ts  # no later window on the step grid contains ts


def test_trailing_windows():
    start = datetime(2025, 3, 1, 10, tzinfo=UTC)
    tw = trailing_windows(start, H, 3)
    assert [w.start.hour for w in tw] == [7, 8, 9] and tw[-1].end == start
    assert trailing_windows(start, H, 0) == []
