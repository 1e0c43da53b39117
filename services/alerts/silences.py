"""Silences: time-boxed matchers that stop delivery of matching alert events.

A silenced event is still written to the outbox and the history; only the
webhook call is skipped (recorded as outcome ``silenced``), the same split
Alertmanager makes.

Matchers map an alert label to a value. A plain key is an exact match; a key
ending in ``=~`` is a regular expression, anchored at both ends as in
Alertmanager::

    {"rule": "negative-buzz", "org=~": "Acme.*"}

Labels an event has: ``rule``, ``org``, ``topic``, ``sentiment``, ``lang``,
``state`` (firing / resolved) and ``alert_id``. A label the event lacks (no
topic filter) has the empty value, so ``{"topic": ""}`` matches only alerts
without a topic. A silence matches when every matcher matches.

Patterns come from API users, so they run on RE2, whose time is linear in the
label's length: no backreferences or lookaround (RE2 refuses them). A new
silence is also refused (:func:`matcher_problems`) when a value is longer than
``MAX_VALUE_CHARS`` or a pattern repeats a part that itself repeats, as in
``(a+)+$``: harmless on RE2, but the classic catastrophic form on a backtracking
engine, and never needed to match a label.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Iterable

import re2

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lyssna.common.contracts import AlertEvent, as_utc

REGEX_SUFFIX = "=~"
LABELS = ("rule", "org", "topic", "sentiment", "lang", "state", "alert_id")
MAX_VALUE_CHARS = 256

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would log the pattern itself to stderr


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> "re2._Regexp":
    """The RE2 form of ``pattern``; raises ValueError with RE2's reason."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else e
        raise ValueError(reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)) from None


# A quantifier: *, +, ? or {n}, {n,}, {n,m} (RE2 and Python read "{" otherwise as a literal).
_QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")


def _repeats(quantifier: str) -> bool:
    """Whether ``quantifier`` can match its atom more than once (``?``, ``{0,1}``, ``{1}`` cannot)."""
    if quantifier == "?":
        return False
    if quantifier.startswith("{"):
        low, comma, high = quantifier[1:-1].partition(",")
        return bool(comma and not high) or int(high or low) > 1  # {n,} has no upper bound
    return True


def has_nested_quantifier(pattern: str) -> bool:
    """Whether a repeated group contains a quantifier: ``(a+)+``, ``(x+x+)+y``, ``((ab)*c)*``.

    A single left-to-right pass with a stack of open groups; escapes and character
    classes are skipped, so ``[+*]`` and ``\\+`` are literals, not quantifiers.
    """
    stack = [False]          # per open group: does it contain a quantifier?
    closed_group = None      # right after ")": whether that group contained one
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        quantifier = _QUANTIFIER.match(pattern, i) if c in "*+?{" else None
        if quantifier:
            if closed_group and _repeats(quantifier.group()):
                return True
            stack[-1] = True
            i = quantifier.end()
            if i < n and pattern[i] in "?+":  # lazy or possessive suffix
                i += 1
            closed_group = None
            continue
        closed_group = None
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            continue
        if c == "(":
            stack.append(False)
        elif c == ")" and len(stack) > 1:
            closed_group = stack.pop()
            stack[-1] = stack[-1] or closed_group
        i += 1
    return False


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class that starts at ``pattern[i] == "["``."""
    i += 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a leading "]" is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def matcher_problems(matchers: dict[str, str]) -> list[str]:
    """Why a new silence's matchers are refused (nothing: accepted). Checked at creation only,
    so a silence stored by an older version still loads."""
    problems = []
    for key, value in matchers.items():
        if len(value) > MAX_VALUE_CHARS:
            problems.append(f"matcher {key!r}: longer than {MAX_VALUE_CHARS} characters")
        elif key.endswith(REGEX_SUFFIX) and has_nested_quantifier(value):
            problems.append(f"matcher {key!r}: a repeated group contains a quantifier, as in '(a+)+', "
                            f"which can take exponential time; write it without the nesting, e.g. 'a+'")
    return problems


def event_labels(event: AlertEvent) -> dict[str, str]:
    return {"rule": event.rule, "org": event.org,
            "topic": event.topic.value if event.topic else "",
            "sentiment": event.sentiment.value if event.sentiment else "",
            "lang": event.lang or "", "state": event.state.value, "alert_id": event.alert_id}


class SilenceNote(BaseModel):
    """Who set a silence and why: the same limits on the way in (the API) and stored."""

    created_by: str = Field(min_length=1, max_length=256)
    comment: str = Field("", max_length=2000)


class Silence(SilenceNote):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    matchers: dict[str, str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime

    @field_validator("matchers")
    @classmethod
    def _valid_matchers(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            label = key[: -len(REGEX_SUFFIX)] if key.endswith(REGEX_SUFFIX) else key
            if label not in LABELS:
                raise ValueError(f"unknown label {label!r} in matcher {key!r}; use one of {', '.join(LABELS)}"
                                 f" (append '=~' to the label for a regular expression)")
            if key.endswith(REGEX_SUFFIX):
                try:
                    compiled(value)
                except ValueError as e:
                    raise ValueError(f"matcher {key!r}: invalid regular expression (RE2 syntax): {e}") from None
        return v

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _as_utc(cls, v: datetime) -> datetime:
        return as_utc(v)

    @model_validator(mode="after")
    def _ends_after_start(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= as_utc(now) < self.ends_at

    def matches(self, event: AlertEvent) -> bool:
        labels = event_labels(event)
        for key, value in self.matchers.items():
            if key.endswith(REGEX_SUFFIX):
                if not compiled(value).fullmatch(labels[key[: -len(REGEX_SUFFIX)]]):
                    return False
            elif labels[key] != value:
                return False
        return True


def silenced_by(event: AlertEvent, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first active silence matching ``event``, if any (for the delivery log)."""
    return next((s for s in silences if s.is_active(now) and s.matches(event)), None)
