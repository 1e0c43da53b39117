"""When to try a webhook delivery again, and what a receiver's answer means.

The default schedule (``DEFAULT_DELAYS``, also ``alerts.retry_schedule`` in the
config) is the wait before each attempt::

    attempt  1    2    3     4    5     6     7    8    9
    wait     0s   5s   30s   2m   10m   30m   1h   3h   6h

i.e. the first attempt goes out immediately, and a receiver that stays down
gets its last chance about 10.7 hours (38 555 s) after the alert. Each wait
is stretched or shrunk at random by up to ``jitter`` (10 %) so that many
deliveries that failed together do not all come back in the same second.
After the last attempt the delivery is dead-lettered; it can be redelivered
through the API.

Attempts are counted as *attempts already made*: ``next_delay(0)`` is the wait
before the first attempt, ``next_delay(n)`` the wait after ``n`` failed ones,
and ``is_exhausted(n)`` says that ``n`` attempts used up the schedule.

What a receiver's answer means (``classify_response``):

- 2xx: delivered.
- 410 Gone: the receiver says the endpoint no longer exists: *disabled*, no
  further deliveries to that webhook until an operator re-enables it.
- 408, 425, 429 and every 5xx: a passing condition on the receiver's side:
  *retry*. On 429 and 503 a ``Retry-After`` header (seconds or an HTTP date)
  is honoured: the next attempt never comes sooner than it asks, capped at
  ``max_retry_after`` so a hostile or broken receiver cannot park an alert for
  ever.
- any other 4xx (400, 401, 403, 404, 413, 422...): the receiver understood and
  refused the request; sending the same bytes again cannot change that, so
  the delivery *failed* permanently (dead letter, redeliverable once fixed).
- 1xx/3xx: *failed*. Redirects are not followed on purpose: a redirect could
  lead the signed request to a host the URL check never saw.
- network errors and timeouts (``classify_exception``): *retry*.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Mapping, Sequence

import httpx

DEFAULT_DELAYS: tuple[timedelta, ...] = tuple(timedelta(seconds=s) for s in (
    0, 5, 30, 2 * 60, 10 * 60, 30 * 60, 60 * 60, 3 * 60 * 60, 6 * 60 * 60))
DEFAULT_MAX_RETRY_AFTER = timedelta(hours=24)

RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRYABLE_4XX = frozenset({408, 425, 429})


class Outcome(StrEnum):
    """The values double as the ``outcome`` label of ``lyssna_alerts_deliveries_total``."""

    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    disabled = "disabled"


def classify_response(status: int, headers: Mapping[str, str] | None = None) -> Outcome:
    """What an HTTP status from a webhook receiver means for the delivery."""
    if 200 <= status < 300:
        return Outcome.delivered
    if status == 410:
        return Outcome.disabled
    if status in RETRYABLE_4XX or 500 <= status < 600:
        return Outcome.retry
    return Outcome.failed


def retry_after_header(status: int, headers: Mapping[str, str] | None) -> str | None:
    """The ``Retry-After`` value to honour: only on 429 and 503, where HTTP defines it
    as a back-off request (on 3xx it means something else)."""
    if status not in RETRY_AFTER_STATUSES or not headers:
        return None
    for k, v in headers.items():
        if k.lower() == "retry-after":
            return v
    return None


def classify_exception(exc: BaseException) -> Outcome:
    """What an exception raised while sending means: a URL that can never work
    fails; anything on the way (DNS, connect, TLS, timeouts, resets) is retried."""
    from lyssna.common.urlsafety import UnsafeWebhookURL  # local: urlsafety does not need this module

    if isinstance(exc, UnsafeWebhookURL):
        return Outcome.failed
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects)):
        return Outcome.failed
    return Outcome.retry


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """``Retry-After`` as a wait: delta-seconds or an HTTP date; ``None`` if absent or unreadable.

    A date in the past means "now" (zero wait).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(when - now, timedelta(0))


@dataclass(frozen=True)
class RetrySchedule:
    """A list of waits before each attempt, with jitter; see the module docstring."""

    delays: Sequence[timedelta] = field(default=DEFAULT_DELAYS)
    jitter: float = 0.1
    max_retry_after: timedelta = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self):
        object.__setattr__(self, "delays", tuple(self.delays))
        if not self.delays:
            raise ValueError("a retry schedule needs at least one delay (the first attempt's)")
        if any(d < timedelta(0) for d in self.delays):
            raise ValueError("retry delays cannot be negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    @property
    def total(self) -> timedelta:
        """Time from the event to the last attempt, without jitter."""
        return sum(self.delays, timedelta(0))

    def is_exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` attempts already made use up the schedule."""
        return attempt >= len(self.delays)

    def next_delay(self, attempt: int, *, retry_after: str | None = None,
                   rng: random.Random | None = None, now: datetime | None = None) -> timedelta:
        """The wait before the next attempt, after ``attempt`` attempts were made.

        ``retry_after`` is the receiver's ``Retry-After`` (pass it only for 429/503;
        see :func:`retry_after_header`): the wait is never shorter than it asks,
        up to ``max_retry_after``. ``now`` only matters for HTTP-date values.
        Raises ``ValueError`` when the schedule is exhausted.
        """
        if attempt < 0:
            raise ValueError("attempt counts attempts already made; it cannot be negative")
        if self.is_exhausted(attempt):
            raise ValueError(f"retry schedule exhausted after {attempt} attempts")
        rng = rng or random
        base = self.delays[attempt]
        wait = base * (1 + rng.uniform(-self.jitter, self.jitter)) if self.jitter else base
        asked = parse_retry_after(retry_after, now=now)
        if asked is not None:
            wait = max(wait, min(asked, self.max_retry_after))
        return wait
