"""The one interface every pull connector implements, and where cursors live.

A connector only *reads* its source: ``batches(cursor)`` yields ``Batch`` es of
posts together with the cursor that is valid once those posts are safely in
Kafka. The runner does the rest (ingest, dead letters, saving the cursor only
after the acks, backoff after errors), so the "no loss, no repeat" rule lives in
one place instead of in every connector.
"""

from __future__ import annotations

import abc
import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, ClassVar, Iterable

import httpx
import redis.asyncio as aioredis

from lyssna.common.contracts import MAX_TEXT_CHARS, Post

from ..normalize import Normalized, Rejection, from_post

USER_AGENT = "Lyssna/0.1 (self-hosted mention monitoring)"


@dataclass
class Batch:
    """Posts read from a source, and the cursor to store once they are acknowledged.

    ``cursor=None`` leaves the stored cursor as it is. A batch without items but
    with a cursor still moves the position (a poll that found nothing new)."""

    items: list[Normalized | Rejection] = field(default_factory=list)
    cursor: str | None = None


def malformed(what: str, error: Exception, raw: Any) -> Rejection:
    """A source item that could not be read, kept whole for the dead letter."""
    return Rejection(f"{what} is malformed: {type(error).__name__}: {error}",
                     payload=json.dumps(raw, default=str)[:100_000])


def prepared(items: Iterable[Post | Rejection]) -> list[Normalized | Rejection]:
    """What a connector read, as a Batch holds it: each Post encoded once."""
    return [from_post(item) if isinstance(item, Post) else item for item in items]


class SourceError(Exception):
    """The source failed (HTTP error, bad payload, dropped connection); the runner
    backs off and restarts the connector from its stored cursor."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


#: Connector classes by the ``type`` of the source they read (``sources[].type`` in
#: the config), filled by :func:`register` as each connector module is imported.
CONNECTORS: dict[str, type["Connector"]] = {}


def register(cls: type["Connector"]) -> type["Connector"]:
    """Class decorator: make ``cls`` the connector for sources of ``cls.type``."""
    if cls.type in CONNECTORS:
        raise ValueError(f"two connectors for source type {cls.type!r}")
    CONNECTORS[cls.type] = cls
    return cls


class Connector(abc.ABC):
    #: The ``Post.source`` value, the metrics channel and the ``type`` of its source config.
    type: ClassVar[str]
    #: The config model of this connector's sources (lyssna.common.config, where
    #: the one settings object validates them).
    source_model: ClassVar[type]

    @classmethod
    def from_source(cls, source: Any, name: str, settings: Any, *,
                    http: httpx.AsyncClient | None = None) -> "Connector":
        """The connector for one configured source; override when it needs more
        than the source's own settings."""
        return cls(source, name)

    def __init__(self, name: str, identity: str):
        self.name = name                 # the ``connector`` metrics label
        # Keyed by what is read, not by the position in the config, so reordering
        # or renaming sources keeps their cursors.
        self.cursor_key = f"{self.type}:{hashlib.sha256(identity.encode()).hexdigest()[:24]}"
        #: First delay after an error; doubles on each further error.
        self.retry_base_s: float = 1.0
        self.retry_cap_s: float = 300.0

    @abc.abstractmethod
    def batches(self, cursor: str | None) -> AsyncIterator[Batch]:
        """Read from ``cursor`` on (None: from now). Returning ends the connector;
        raising hands the error to the runner."""

    async def aclose(self) -> None:
        """Release clients and sockets."""


class CursorStore:
    """Connector cursors in Redis, under the configured key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str):
        self._r = client
        self._prefix = f"{prefix}ingest:cursor:"

    async def get(self, key: str) -> str | None:
        v = await self._r.get(self._prefix + key)
        return None if v is None else v.decode()

    async def set(self, key: str, value: str) -> None:
        await self._r.set(self._prefix + key, value.encode())


def connector_name(source: Any, index: int) -> str:
    return getattr(source, "name", None) or f"{source.type}:{index}"


def backoff_delay(failures: int, base_s: float, cap_s: float, *, retry_after: float | None = None,
                  jitter: float = 0.2, rand=random.random) -> float:
    """Seconds to wait after the ``failures``-th consecutive error: base, 2*base,
    4*base ... up to cap, spread by +-jitter so many connectors do not retry in
    step; never sooner than a server's Retry-After."""
    if failures <= 0:
        return 0.0
    delay = min(cap_s, base_s * 2 ** min(failures - 1, 30))
    delay *= 1 + jitter * (2 * rand() - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0.0, delay)


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Connector texts (whole articles, say) are cut to the contract's limit rather
    than refused: the start of a long post is still worth classifying."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_time(v: Any) -> datetime | None:
    """An ISO-8601 time from a source's payload; None when absent or unreadable
    (the post then counts from when it was fetched)."""
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None
