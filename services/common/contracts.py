"""Message contracts on the Kafka topics.

Every service imports these models; no service re-declares another's message
shape. Each message carries a ``schema`` version so consumers can reject what
they do not understand instead of guessing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

POST_SCHEMA = "lyssna.post.v1"
CLASSIFIED_SCHEMA = "lyssna.classified.v1"
ALERT_EVENT_SCHEMA = "lyssna.alert_event.v1"
DEADLETTER_SCHEMA = "lyssna.deadletter.v1"

MAX_TEXT_CHARS = 20_000


class Topics:
    """Default Kafka topic names; the config can override each one."""

    POSTS_RAW = "lyssna.posts.raw"
    POSTS_CLASSIFIED = "lyssna.posts.classified"
    ALERTS_EVENTS = "lyssna.alerts.events"
    DEADLETTER = "lyssna.deadletter"


class Label(StrEnum):
    recruitment = "recruitment"
    employer_branding = "employer_branding"
    internal_communication = "internal_communication"
    employee_satisfaction = "employee_satisfaction"
    customer_satisfaction = "customer_satisfaction"
    engagement = "engagement"


class Sentiment(StrEnum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"


LABELS: tuple[str, ...] = tuple(label.value for label in Label)
SENTIMENTS: tuple[str, ...] = tuple(s.value for s in Sentiment)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive datetime is taken to be UTC already."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def content_post_id(source: str, author: str | None, text: str) -> str:
    """A stable id for posts whose source gave none: the same content always maps
    to the same id, so re-sent posts are absorbed as duplicates."""
    digest = hashlib.sha256(f"{source}\x1f{author or ''}\x1f{text}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


_MESSAGE_CONFIG = ConfigDict(extra="forbid", frozen=True, validate_by_name=True,
                             validate_by_alias=True, serialize_by_alias=True)


class _Message(BaseModel):
    # "schema" shadows a BaseModel attribute, so the field is schema_ on the
    # Python side and "schema" on the wire.
    model_config = _MESSAGE_CONFIG

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes | str):
        return cls.model_validate_json(data)


class Post(_Message):
    """A normalized post on ``lyssna.posts.raw``, keyed by ``id``."""

    schema_: Literal["lyssna.post.v1"] = Field(POST_SCHEMA, alias="schema")
    id: str = Field(min_length=1, max_length=512)
    source: str = Field(min_length=1, max_length=64)
    url: str | None = Field(None, max_length=2048)
    author: str | None = Field(None, max_length=512)
    # Set when ``author`` is a pseudonym (lyssna.common.pseudonyms): the id of the key
    # that made it, so erasure finds it after a key rotation. None: as the source gave it.
    author_key_id: str | None = Field(None, max_length=32)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    created_at: datetime | None = None
    fetched_at: datetime = Field(default_factory=utcnow)
    lang_hint: str | None = Field(None, max_length=16)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v

    @property
    def event_time(self) -> datetime:
        """When the post happened: the source's time when known, else when we fetched it."""
        return self.created_at or self.fetched_at


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    encoder: str
    heads: str


class ClassifiedPost(Post):
    """A post plus what classify found, on ``lyssna.posts.classified``."""

    schema_: Literal["lyssna.classified.v1"] = Field(CLASSIFIED_SCHEMA, alias="schema")  # type: ignore[assignment]
    lang: str
    orgs: list[str] = Field(default_factory=list)
    topics: list[Label] = Field(default_factory=list)
    topic_scores: dict[Label, float] = Field(default_factory=dict)
    sentiment: Sentiment
    sentiment_scores: dict[Sentiment, float] = Field(default_factory=dict)
    model: ModelInfo
    classified_at: datetime = Field(default_factory=utcnow)
    # Set when the transformer did not run (classify.scope: mentions and no watched
    # organization): topics and scores are then empty and sentiment means nothing.
    skipped: str | None = Field(None, max_length=64)
    # Why a named organization did (not) count: the relevance model's score for each
    # ambiguous name it judged (0..1; counted at or above its threshold), and each
    # named organization that is not in ``orgs`` with the reason.
    org_relevance: dict[str, float] = Field(default_factory=dict)
    rejected_orgs: dict[str, Literal["not_relevant", "exclude", "include_any", "near"]] = Field(default_factory=dict)


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


class SamplePost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    url: str | None = None
    text: str


class AlertEvent(_Message):
    """An alert state change on ``lyssna.alerts.events``, the durable outbox that
    delivery reads. ``event_id`` is unique per state change and becomes the
    ``webhook-id``, so retries and redeliveries are recognisable by receivers."""

    schema_: Literal["lyssna.alert_event.v1"] = Field(ALERT_EVENT_SCHEMA, alias="schema")
    event_id: str
    alert_id: str
    state: AlertState
    rule: str
    org: str
    topic: Label | None = None
    sentiment: Sentiment | None = None
    lang: str | None = None
    window_start: datetime
    window_end: datetime
    count: int
    # Distinct authors among the counted posts (up to counts.MAX_AUTHORS_PER_CELL);
    # None where not known (events written before authors were counted).
    authors: int | None = None
    threshold: float | None = None
    baseline: float | None = None
    value: float | None = None
    notify: list[str] = Field(default_factory=list)
    samples: list[SamplePost] = Field(default_factory=list)
    occurred_at: datetime = Field(default_factory=utcnow)


class DeadLetter(_Message):
    """A record that could not be processed, with why, on ``lyssna.deadletter``."""

    schema_: Literal["lyssna.deadletter.v1"] = Field(DEADLETTER_SCHEMA, alias="schema")
    service: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    reason: str
    payload: str = Field(description="the original bytes, decoded as UTF-8 with replacement")
    failed_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def for_record(cls, *, service: str, topic: str, reason: str, value: bytes | None,
                   key: bytes | None = None, partition: int | None = None,
                   offset: int | None = None) -> "DeadLetter":
        return cls(
            service=service, topic=topic, partition=partition, offset=offset,
            key=key.decode("utf-8", "replace") if key else None,
            reason=reason[:2000],
            payload=(value or b"").decode("utf-8", "replace")[:100_000],
        )
