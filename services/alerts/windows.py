"""Event-time window arithmetic.

Windows are aligned to the Unix epoch, so every worker (and every restart)
puts a post in the same window without sharing any state: a 1 h window always
starts on the hour, a 15 m window on :00, :15, :30, :45 (UTC).

- tumbling windows (``step`` omitted or equal to ``size``): each instant is in
  exactly one window ``[start, start + size)``;
- hopping windows (``step < size``): windows of ``size`` start every
  ``step``, so an instant is in ``ceil(size / step)`` of them.

A window is half-open: an instant exactly at its end belongs to the next one.
Arithmetic is done in whole microseconds so no float rounding can move a post
across a window edge. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import NamedTuple

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


class Window(NamedTuple):
    start: datetime
    end: datetime

    def contains(self, ts: datetime) -> bool:
        return self.start <= _aware(ts) < self.end


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _us(td: timedelta) -> int:
    return td // _US


def _check(size: timedelta, step: timedelta | None) -> tuple[int, int]:
    size_us = _us(size)
    step_us = size_us if step is None else _us(step)
    if size_us <= 0:
        raise ValueError("window size must be positive")
    if step_us <= 0:
        raise ValueError("window step must be positive")
    if step_us > size_us:
        raise ValueError("window step larger than the size would leave gaps between windows")
    return size_us, step_us


def window_start(ts: datetime, size: timedelta, step: timedelta | None = None) -> datetime:
    """Start of the latest window containing ``ts`` (the only one when tumbling)."""
    _, step_us = _check(size, step)
    offset = _us(_aware(ts) - EPOCH)
    return EPOCH + (offset - offset % step_us) * _US


def window_for(ts: datetime, size: timedelta, step: timedelta | None = None) -> Window:
    """The latest window containing ``ts``."""
    start = window_start(ts, size, step)
    return Window(start, start + size)


def trailing_windows(start: datetime, size: timedelta, n: int) -> list[Window]:
    """The ``n`` tumbling windows just before the one starting at ``start``, oldest
    first: the baseline a spike is compared with."""
    if n < 0:
        raise ValueError("n cannot be negative")
    start = _aware(start)
    return [Window(start - k * size, start - (k - 1) * size) for k in range(n, 0, -1)]
