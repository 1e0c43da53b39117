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
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lyssna.common.contracts import AlertEvent

REGEX_SUFFIX = "=~"
LABELS = ("rule", "org", "topic", "sentiment", "lang", "state", "alert_id")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def event_labels(event: AlertEvent) -> dict[str, str]:
    return {"rule": event.rule, "org": event.org,
            "topic": event.topic.value if event.topic else "",
            "sentiment": event.sentiment.value if event.sentiment else "",
            "lang": event.lang or "", "state": event.state.value, "alert_id": event.alert_id}


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    matchers: dict[str, str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    created_by: str = Field(min_length=1, max_length=256)
    comment: str = Field("", max_length=2000)

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
                    re.compile(value)
                except re.error as e:
                    raise ValueError(f"matcher {key!r}: invalid regular expression: {e}") from None
        return v

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _as_utc(cls, v: datetime) -> datetime:
        return _utc(v)

    @model_validator(mode="after")
    def _ends_after_start(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= _utc(now) < self.ends_at

    def matches(self, event: AlertEvent) -> bool:
        labels = event_labels(event)
        for key, value in self.matchers.items():
            if key.endswith(REGEX_SUFFIX):
                if not re.fullmatch(value, labels[key[: -len(REGEX_SUFFIX)]]):
                    return False
            elif labels[key] != value:
                return False
        return True


def silenced_by(event: AlertEvent, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first active silence matching ``event``, if any (for the delivery log)."""
    return next((s for s in silences if s.is_active(now) and s.matches(event)), None)


def is_silenced(event: AlertEvent, silences: Iterable[Silence], now: datetime) -> bool:
    return silenced_by(event, silences, now) is not None
