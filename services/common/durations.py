"""Human durations in the config and the API ("30s", "5m", "1h30m", "7d", "200ms").

The grammar is exactly :data:`DURATION_PATTERN` (ASCII digits, lower-case units,
no spaces) or a non-negative number of seconds, and :data:`DURATION_JSON_SCHEMA`
says so in the OpenAPI document: what the document calls valid is what is taken.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
DURATION_JSON_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "5m", "1h30m", "7d"]},
              {"type": "number", "minimum": 0, "description": "seconds"}],
    "description": "a duration: number and unit (ms, s, m, h, d, w), repeated, e.g. '1h30m'; or seconds",
}
# What the API answers: format_duration's output, one part.
DURATION_OUT_JSON_SCHEMA = {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h|d)$", "examples": ["30s", "1h"]}
_BAD = "{!r} is not a duration; write it like 30s, 5m, 1h or 7d"


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse "1h30m", "45s", "7d" (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h or 7d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _seconds(value)
    if not isinstance(value, str):
        raise ValueError(_BAD.format(value))
    pos, total = 0, 0.0
    for m in _PART.finditer(value):  # finditer, not one repeated group: linear in the text
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not value or pos != len(value):
        raise ValueError(_BAD.format(value))
    return _seconds(total)


def _seconds(seconds: float) -> timedelta:
    # OverflowError is no ValueError: "99999999999w" would otherwise be a 500, not a 422.
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"a duration of {seconds:.3g} s is longer than any this service can hold") from None


def format_duration(td: timedelta) -> str:
    """The shortest exact form: parse_duration(format_duration(td)) == td (to the ms)."""
    ms = round(td.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
