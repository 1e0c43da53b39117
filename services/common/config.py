"""The one settings object, read from the YAML file at ``LYSSNA_CONFIG`` and the
environment.

The file describes *what* to watch (organizations, sources, rules, webhooks);
environment variables override *where things run* (Kafka, Redis, ports,
secrets), so one file serves every deployment. A bad file stops start-up with
the file, the line, the key path, what is wrong and how to fix it.
"""

from __future__ import annotations

import logging
import math
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, NamedTuple, Union

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PrivateAttr, StrictFloat, StrictInt, ValidationError,
    WithJsonSchema, field_validator, model_validator,
)

from .auth import ALL_SCOPES_VAR, KEY_VARIABLES, parse_key_list
from .contracts import Label, Sentiment, Topics
from .durations import (
    DURATION_JSON_SCHEMA, DURATION_OUT_JSON_SCHEMA, format_duration, parse_duration,
)
from .webhook_formats import WebhookFormat

# The JSON schema says what parse_duration takes ("30s"), not pydantic's ISO 8601 guess.
Duration = Annotated[timedelta, BeforeValidator(parse_duration),
                     PlainSerializer(format_duration, return_type=str),
                     WithJsonSchema(DURATION_JSON_SCHEMA, mode="validation"),
                     WithJsonSchema(DURATION_OUT_JSON_SCHEMA, mode="serialization")]


class ConfigError(Exception):
    """Raised for a configuration that cannot run; the message says how to fix it."""


class _Section(BaseModel):
    # Unknown keys are errors: a misspelled key would otherwise be silently ignored.
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- infrastructure

class KafkaTopics(_Section):
    posts_raw: str = Topics.POSTS_RAW
    posts_classified: str = Topics.POSTS_CLASSIFIED
    alerts_events: str = Topics.ALERTS_EVENTS
    deadletter: str = Topics.DEADLETTER


def _replica_count(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    if isinstance(v, str) and v.strip().isdigit() and int(v) >= 1:
        return int(v)  # from the environment
    raise ValueError(f"{v!r} is not a replica count: write auto, or a whole number of at least 1 "
                     f"(3 and 2 on a three-broker cluster)")


# A number of replicas, or "auto": decided from the cluster when a topic is created.
ReplicaCount = Annotated[Union[int, Literal["auto"]], BeforeValidator(_replica_count)]


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: KafkaTopics = KafkaTopics()
    partitions: int = Field(3, ge=1)
    # Of the topics Lyssna creates (its own and the Faust changelogs). "auto"
    # decides from the brokers there are when a topic is created: 3 and 2 from
    # three on, 1 and 1 on one dev broker (kafka_admin.resolve_replication).
    # Production names them (config/lyssna.production.yaml, deploy/README.md).
    replication_factor: ReplicaCount = "auto"
    min_insync_replicas: ReplicaCount = "auto"
    _retention_ms: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> "KafkaSettings":
        if "auto" in (self.replication_factor, self.min_insync_replicas):
            return self  # checked against the cluster when the topics are created
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) is larger than replication_factor "
                             f"({self.replication_factor}): no write could ever succeed. Fix: set "
                             f"kafka.min_insync_replicas to at most kafka.replication_factor (e.g. 3 and 2)")
        return self

    def topic_layout(self) -> dict[str, Any]:
        """How the topics Lyssna creates are laid out (``ensure_topics`` keywords), with
        each topic's ``retention.ms`` from the ``retention`` section (set by ``Settings``)."""
        return {"partitions": self.partitions, "replication_factor": self.replication_factor,
                "min_insync_replicas": self.min_insync_replicas, "retention_ms": dict(self._retention_ms)}


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "lyssna:"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class ApiServerSettings(ServerSettings):
    """A server with an authenticated API (ingest, alerts). Worst case, the bodies held at
    once take max_concurrent_requests x max_body_bytes of memory."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_concurrent_requests: int = Field(16, ge=1, le=10_000,
                                         description="authenticated requests handled at once; more get 503 "
                                                     "with Retry-After (health and metrics are not counted)")


class IngestSettings(ApiServerSettings):
    port: int = Field(8081, ge=1, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_batch_items: int = Field(5000, ge=1)
    max_text_chars: int = Field(20_000, ge=1)
    dedup_ttl: Duration = timedelta(days=7)
    max_feed_bytes: int = Field(5 * 1024 * 1024, ge=1024,
                                description="a connector's HTTP response larger than this is refused while it streams")
    max_clock_skew: Duration = Field(timedelta(minutes=5),
                                     description="a created_at further in the future is replaced by the fetch time")
    max_post_age: Duration = Field(timedelta(days=3650),
                                   description="a created_at older than this is replaced by the fetch time")
    connectors_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="Kafka consumer group (and its one-partition-per-source topic) through which ingest replicas "
                    "share the sources, each polled by one replica; default: from redis.key_prefix "
                    "(lyssna: -> lyssna.ingest-connectors), so replicas sharing cursors share the sources")
    connectors_session_timeout: Duration = Field(
        timedelta(seconds=10),
        description="a replica silent for this long loses its sources to another replica (takeover after kill "
                    "-9: about this plus a third of it); the broker allows 6s to 30m by default")

    @field_validator("connectors_session_timeout")
    @classmethod
    def _session_in_broker_bounds(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= timedelta(minutes=30):
            raise ValueError(f"{format_duration(v)} is outside what Kafka brokers accept. Fix: set "
                             f"ingest.connectors_session_timeout between 1s and 30m, and within the broker's "
                             f"group.min.session.timeout.ms and group.max.session.timeout.ms (6s and 30m by default)")
        return v


class ClassifySettings(ServerSettings):
    port: int = Field(8082, ge=1, le=65535)
    model: str = Field(".local/models/multilingual-e5-small",
                       description="a local model folder or a hub id")
    heads: str | None = Field(None, description="folder with trained heads; default: the bundled ones")
    batch_size: int = Field(256, ge=1, le=4096,
                            description="posts taken from Kafka per batch (and the most per model call); with "
                                        "scope: mentions few of them reach the model, so large batches keep "
                                        "its calls efficient under a firehose")
    batch_within: Duration = timedelta(milliseconds=200)
    threads: int | None = Field(None, ge=1)
    precision: Literal["auto", "int8", "bf16", "fp32"] = Field(
        "auto", description="the encoder's path: auto picks from the CPU (bf16 on AMX/AVX-512 BF16, else the int8 "
                            "ONNX graph `make model` builds, else fp32); the service logs its choice")
    scope: Literal["mentions", "all"] = Field(
        "mentions", description="mentions: the transformer runs only on posts that mention a watched "
                                "organization; the others get their language, are counted in "
                                "lyssna_classify_skipped_total and handled as `irrelevant` says. all: every post")
    irrelevant: Literal["drop", "forward"] = Field(
        "drop", description="with scope: mentions, what happens to a post without a watched organization: "
                            "drop (not kept past classification) or forward to posts.classified with "
                            "orgs: [], no topics and skipped set")
    app_id: str = Field("lyssna-classify", pattern=r"^[A-Za-z0-9_.-]+$",
                        description="Kafka consumer group of the classify workers")
    batch_budget: Duration = Field(timedelta(seconds=30),
                                   description="a batch not classified within this is classified post by post")
    post_budget: Duration = Field(timedelta(seconds=10),
                                  description="a post not classified within this (post by post) goes to the dead "
                                              "letter with the reason, and the stream goes on")
    produce_attempts: int = Field(5, ge=1, description="tries to produce a batch's output before the worker "
                                                        "crashes, to restart from the last committed offset")
    produce_backoff: Duration = Field(timedelta(seconds=1),
                                      description="wait after the first failed try; doubles after each")
    stall_after: Duration = Field(timedelta(minutes=2),
                                  description="/readyz reports the stream stalled when records wait and no "
                                              "batch was handled for this long")


class AlertsSettings(ApiServerSettings):
    port: int = Field(8083, ge=1, le=65535)
    samples_per_alert: int = Field(3, ge=0, le=20)
    delivery_timeout: Duration = timedelta(seconds=10)
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(s) for s in
                                 ("0s", "5s", "30s", "2m", "10m", "30m", "1h", "3h", "6h")])
    app_id: str = Field("lyssna-alerts", pattern=r"^[A-Za-z0-9_.-]+$",
                        description="Kafka consumer group and prefix of the alerts' internal topics")
    bucket: Duration = Field(timedelta(minutes=1),
                             description="granularity of the stored counts; every rule window is a multiple of it")
    retention: Duration = Field(timedelta(days=8),
                                description="how long counts are kept; a spike rule's window x (baseline_windows + 1) must fit")
    evaluate_interval: Duration = Field(timedelta(seconds=10),
                                        description="how often every rule is re-evaluated, so alerts resolve when posts stop")
    late_fire: Duration = Field(timedelta(minutes=5),
                                description="a window that ended less than this ago can still fire: posts written "
                                            "just before its end are counted just after it; 0s judges only the "
                                            "current window")
    delivery_lease: Duration = Field(timedelta(minutes=1),
                                     description="a delivery attempt not finished after this is retried (crashed worker)")
    delivery_concurrency: int = Field(16, ge=1, le=256)
    history_retention: Duration | None = Field(None, description="moved to retention.alert_history; "
                                                 "still read, with a warning at start")
    public_url: str | None = Field(None, description="the alerts API's address as receivers reach it, for links in alerts")


class RetentionSettings(_Section):
    """How long Lyssna keeps what people wrote (PRIVACY.md). Each service sets these as
    ``retention.ms`` on the Kafka topics it creates and as TTLs on every Redis key that
    holds post text, and warns at start about a topic that keeps records longer."""
    raw_posts: Duration = Field(timedelta(days=2), description="lyssna.posts.raw: only until classify has read it")
    classified_posts: Duration = Field(timedelta(days=3),
                                       description="lyssna.posts.classified: until alerts has counted it")
    dead_letters: Duration = Field(timedelta(days=7), description="lyssna.deadletter: long enough to look into")
    sample_texts: Duration = Field(timedelta(days=7),
                                   description="post texts kept to quote in alerts: the sample pool, the samples "
                                               "of stored alert events, and the lyssna.alerts.events topic")
    alert_history: Duration = Field(timedelta(days=30),
                                    description="alert events (their samples only for sample_texts) and "
                                                "delivery records, for the API")
    audit_log: Duration = Field(timedelta(days=365), description="who changed rules, silences, webhooks or erased data")
    audit_entries: int = Field(10_000, ge=100, description="the audit log keeps at most this many entries")

    @field_validator("raw_posts", "classified_posts", "dead_letters", "sample_texts", "alert_history", "audit_log")
    @classmethod
    def _at_least_a_minute(cls, v: timedelta) -> timedelta:
        if v < timedelta(minutes=1):
            raise ValueError("a retention must be at least 1m (0 would keep nothing Kafka can hand on)")
        return v

    def topics_ms(self, topics: KafkaTopics) -> dict[str, int]:
        """Topic name -> its ``retention.ms``: what ``ensure_topics`` sets and checks."""
        ms = {topics.posts_raw: self.raw_posts, topics.posts_classified: self.classified_posts,
              topics.deadletter: self.dead_letters, topics.alerts_events: self.sample_texts}
        return {name: int(d.total_seconds() * 1000) for name, d in ms.items()}


class PrivacySettings(_Section):
    """What Lyssna keeps about the people who write the posts (PRIVACY.md)."""
    authors: Literal["pseudonymous", "keep"] = Field(
        "pseudonymous", description="pseudonymous: ingest replaces each author handle by a keyed hash "
                                    "(HMAC-SHA256 with the key in LYSSNA_AUTHOR_KEY), so the handle never "
                                    "reaches Kafka or Redis; keep: handles are stored as the source gives them")


# ---------------------------------------------------------------- what to watch

class NearQuery(_Section):
    terms: list[str] = Field(min_length=1)
    within: int = Field(5, ge=0, le=100, description="at most this many words between the name and a term")


class OrganizationConfig(_Section):
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    # Is a post about this organization or about something else with its name?
    # (lyssna.classify.relevance, README "Watchlist precision")
    description: str | None = Field(None, description="what the organization is, in one line; the relevance "
                                                      "model compares posts with it")
    context: list[str] = Field(default_factory=list, description="words that go with the organization")
    ambiguous: bool = Field(False, description="the name is also a first name, place, word or another brand: "
                                               "a post naming it counts only if the relevance model finds it "
                                               "is about the organization")
    # Boolean query (lyssna.classify.query): all optional.
    include_any: list[str] | None = Field(None, description="count a mention only in a post that also has one "
                                                            "of these")
    exclude: list[str] = Field(default_factory=list, description="never count a mention in a post with one of these")
    near: NearQuery | None = Field(None, description="count a mention only with one of these terms near the name")

    def problems(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        """Why this entry can never count a mention: (key, what, fix) each."""
        from lyssna.classify.query import problems  # pure; folds terms exactly as the matcher does

        out = [(p.key, p.message, p.fix) for p in problems(
            self.name, self.aliases, self.include_any, self.exclude, self.near.terms if self.near else None)]
        if self.ambiguous and not (self.description or "").strip():
            out.append((("description",), f"organization {self.name!r} is ambiguous but has no description for "
                        "the relevance model", "add description: one line saying what it is (e.g. 'energy "
                        "company: grid, electricity'), or set ambiguous: false"))
        return out


class RssSource(_Section):
    type: Literal["rss"]
    name: str | None = None
    url: str
    interval: Duration = timedelta(minutes=5)
    allow_private_network: bool = Field(False, description="allow loopback/private addresses (and redirects there)")


class MastodonSource(_Section):
    type: Literal["mastodon"]
    name: str | None = None
    instance: str = Field(description="base URL, e.g. https://mastodon.social")
    hashtag: str | None = None
    account: str | None = None
    interval: Duration = timedelta(minutes=1)
    allow_private_network: bool = Field(False, description="allow loopback/private addresses (and redirects there)")

    @model_validator(mode="after")
    def _one_timeline(self):
        if bool(self.hashtag) == bool(self.account):
            raise ValueError("set exactly one of 'hashtag' or 'account'")
        return self


class BlueskySource(_Section):
    type: Literal["bluesky"]
    name: str | None = None
    url: str = "wss://jetstream2.us-east.bsky.network/subscribe"


class FileSource(_Section):
    type: Literal["file"]
    name: str | None = None
    path: str
    speedup: float | None = Field(None, gt=0, description="replay original timing N times faster; unset = as fast as possible")


SourceConfig = Annotated[Union[RssSource, MastodonSource, BlueskySource, FileSource],
                         Field(discriminator="type")]


# Strict numbers: "5" is no integer in the API's JSON schema, so the API must not take it as one.
class CountCondition(_Section):
    type: Literal["count"]
    threshold: StrictInt = Field(ge=1)


class RatioCondition(_Section):
    type: Literal["ratio"]
    sentiment: Sentiment = Sentiment.negative
    threshold: StrictFloat = Field(gt=0, le=1)
    min_volume: StrictInt = Field(10, ge=1)


class SpikeCondition(_Section):
    type: Literal["spike"]
    factor: StrictFloat | None = Field(None, gt=1)
    z_score: StrictFloat | None = Field(None, gt=0)
    baseline_windows: StrictInt = Field(24, ge=2)
    min_volume: StrictInt = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_test(self):
        if (self.factor is None) == (self.z_score is None):
            raise ValueError("set exactly one of 'factor' or 'z_score'")
        return self


Condition = Annotated[Union[CountCondition, RatioCondition, SpikeCondition],
                      Field(discriminator="type")]


#: The largest ``min_authors``; lyssna.alerts.counts remembers this many authors per cell and bucket.
MAX_MIN_AUTHORS = 100
#: ``min_score`` steps: the counts keep each post's scores in these steps (20ths), so a bucket's
#: value stays bounded by its cells, not by the posts counted in it (it is rewritten per post).
MIN_SCORE_STEPS = 20


class RuleConfig(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    org: str = "*"
    topic: Label | None = None
    sentiment: Sentiment | None = None
    lang: str | None = None
    window: Duration = Field(timedelta(hours=1), json_schema_extra={"default": "1h"})  # not ISO "PT1H"
    condition: Condition
    cooldown: Duration = Field(timedelta(hours=6), json_schema_extra={"default": "6h"})
    notify: list[str] = Field(default_factory=list)
    # 20 posts by 2 people are not what 20 people say. Authors are told apart by their
    # pseudonyms; posts without an author count for no one.
    min_authors: StrictInt | None = Field(
        None, ge=1, le=MAX_MIN_AUTHORS,
        description="fire only when the posts the rule measures come from at least this many distinct authors "
                    f"(at most {MAX_MIN_AUTHORS}: the counts remember that many authors per cell and bucket)")
    # The classifier's scores, not only its labels: a post counts only when it is at least this
    # sure of the rule's topic and of the sentiment measured (MODEL_CARD.md: precision/recall per value).
    min_score: StrictFloat | None = Field(
        None, ge=0.05, le=0.95,
        description="count a post only when its score for the rule's topic and for the measured sentiment "
                    f"are at least this (a multiple of {1 / MIN_SCORE_STEPS:g}, 0.05-0.95)")

    @model_validator(mode="after")
    def _min_score_usable(self) -> "RuleConfig":
        if self.min_score is None:
            return self
        if abs(self.min_score * MIN_SCORE_STEPS - round(self.min_score * MIN_SCORE_STEPS)) > 1e-9:
            raise ValueError(f"min_score {self.min_score} is not a multiple of {1 / MIN_SCORE_STEPS:g} (the counts "
                             f"keep scores in those steps). Fix: round it, e.g. min_score: "
                             f"{math.floor(self.min_score * MIN_SCORE_STEPS) / MIN_SCORE_STEPS:g}")
        if self.topic is None and self.sentiment is None and not isinstance(self.condition, RatioCondition):
            raise ValueError("min_score has no score to check: the rule has no topic or sentiment. Fix: add "
                             "topic and/or sentiment to the rule, or remove min_score")
        return self


class WebhookConfig(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str
    format: WebhookFormat = "json"  # the names of lyssna.alerts.payloads.RENDERERS
    secret_env: str | None = Field(None, description="env var holding the whsec_ secret (several, comma-separated, during rotation)")
    allow_private_network: bool = False
    timeout: Duration = timedelta(seconds=10)
    samples: Literal["text", "link", "none"] = Field(
        "text", description="what the body says of the sample posts: their text (and link), only the link, or nothing")
    mask_samples: bool = Field(True, description="replace @handles and e-mail addresses in sample texts "
                                                 "by '@…' and '[e-mail]'")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    ingest: IngestSettings = IngestSettings()
    classify: ClassifySettings = ClassifySettings()
    alerts: AlertsSettings = AlertsSettings()
    privacy: PrivacySettings = PrivacySettings()
    retention: RetentionSettings = RetentionSettings()
    organizations: list[OrganizationConfig] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    # Never read from the file: keys come from the environment only, so a
    # committed config cannot leak them. api_keys (LYSSNA_API_KEY) carry every
    # scope; scoped_api_keys maps a scope to the keys that carry it (lyssna.common.auth).
    api_keys: list[str] = Field(default_factory=list, exclude=True, repr=False)
    scoped_api_keys: dict[str, list[str]] = Field(default_factory=dict, exclude=True, repr=False)

    @model_validator(mode="after")
    def _retention(self):
        # alerts.history_retention was the one retention before the retention section.
        old = self.alerts.history_retention
        if old is not None:
            if "alert_history" in self.retention.model_fields_set and self.retention.alert_history != old:
                raise _RefError(("alerts", "history_retention"),
                                "alerts.history_retention and retention.alert_history disagree",
                                "remove alerts.history_retention (it moved to retention.alert_history)")
            logging.getLogger(__name__).warning(
                "alerts.history_retention is deprecated; move its value to retention.alert_history")
            self.retention = self.retention.model_copy(update={"alert_history": old})
        # Every caller of kafka.topic_layout() creates its topics with these (and checks them).
        self.kafka = self.kafka.model_copy()
        self.kafka._retention_ms = self.retention.topics_ms(self.kafka.topics)
        return self

    @model_validator(mode="after")
    def _cross_references(self):
        for i, org in enumerate(self.organizations):
            if problems := org.problems():
                where, message, fix = problems[0]
                raise _RefError(("organizations", i, *where), message, fix)
        for i, rule in enumerate(self.rules):
            if broken := self.broken_references(rule):
                raise _RefError(("rules", i, *broken[0].where), broken[0].message, broken[0].fix)
        for section, items in (("rules", self.rules), ("webhooks", self.webhooks),
                               ("organizations", self.organizations)):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    raise _RefError((section, i, "name"), f"duplicate name {item.name!r}",
                                    "give each entry a unique name")
                seen.add(item.name)
        return self

    def broken_references(self, rule: RuleConfig) -> list[BrokenReference]:
        """The webhooks and organization ``rule`` names that these settings lack. One check
        for the file's rules (above) and the API's (lyssna.alerts.ruleset), so both say it alike."""
        hooks = sorted(w.name for w in self.webhooks)
        orgs = sorted(o.name for o in self.organizations)
        broken = [BrokenReference(("notify", j), f"rule {rule.name!r} notifies unknown webhook {name!r}",
                                  f"add a webhook named {name!r} under 'webhooks:' in the config file "
                                  f"or use one of {hooks or 'none defined'}")
                  for j, name in enumerate(rule.notify) if name not in hooks]
        if rule.org != "*" and rule.org not in orgs:
            broken.append(BrokenReference(("org",), f"rule {rule.name!r} names unknown organization {rule.org!r}",
                                          f"use '*' or one of the organizations' names: {orgs or 'none defined'}"))
        return broken

    def webhook(self, name: str) -> WebhookConfig:
        return next(w for w in self.webhooks if w.name == name)


class BrokenReference(NamedTuple):
    """A name in a rule that the settings do not define: where in the rule, what, and the fix."""

    where: tuple[str | int, ...]
    message: str
    fix: str


class _RefError(ValueError):
    def __init__(self, loc: tuple, message: str, fix: str):
        super().__init__(message)
        self.loc, self.message, self.fix = loc, message, fix


# ---------------------------------------------------------------- loading

# Environment variable -> key path in the settings. Only infrastructure and
# secrets are overridable; what to watch lives in the file.
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "LYSSNA_KAFKA_REPLICATION_FACTOR": ("kafka", "replication_factor"),
    "LYSSNA_KAFKA_MIN_INSYNC_REPLICAS": ("kafka", "min_insync_replicas"),
    "REDIS_URL": ("redis", "url"),
    "LYSSNA_REDIS_PREFIX": ("redis", "key_prefix"),
    "LYSSNA_INGEST_HOST": ("ingest", "host"),
    "LYSSNA_INGEST_PORT": ("ingest", "port"),
    "LYSSNA_INGEST_CONNECTORS_GROUP": ("ingest", "connectors_group"),
    "LYSSNA_CLASSIFY_HOST": ("classify", "host"),
    "LYSSNA_CLASSIFY_PORT": ("classify", "port"),
    "LYSSNA_ALERTS_HOST": ("alerts", "host"),
    "LYSSNA_ALERTS_PORT": ("alerts", "port"),
    "LYSSNA_ALERTS_APP_ID": ("alerts", "app_id"),
    "LYSSNA_CLASSIFY_APP_ID": ("classify", "app_id"),
    "LYSSNA_MODEL": ("classify", "model"),
    "LYSSNA_HEADS": ("classify", "heads"),
    "LYSSNA_TOPIC_POSTS_RAW": ("kafka", "topics", "posts_raw"),
    "LYSSNA_TOPIC_POSTS_CLASSIFIED": ("kafka", "topics", "posts_classified"),
    "LYSSNA_TOPIC_ALERTS_EVENTS": ("kafka", "topics", "alerts_events"),
    "LYSSNA_TOPIC_DEADLETTER": ("kafka", "topics", "deadletter"),
}

_FIXES = {
    "extra_forbidden": "remove the key or correct its spelling; allowed keys here: {allowed}",
    "missing": "add this key",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a text value (quote it if YAML reads it as something else)",
    "list_type": "write a list, e.g. [a, b] or one '- item' per line",
    "model_type": "write a mapping of keys to values",
    "model_attributes_type": "write a mapping of keys to values",
    "enum": "use one of the allowed values",
    "literal_error": "use one of the allowed values",
    "union_tag_invalid": "set 'type' to one of the allowed values",
    "union_tag_not_found": "add a 'type' key",
}


def _line_index(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path in the YAML document to its 1-based line number."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = path + (key_node.value,)
            out[sub] = key_node.start_mark.line + 1
            _line_index(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = path + (i,)
            out[sub] = item.start_mark.line + 1
            _line_index(item, sub, out)
    return out


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _allowed_keys(loc: tuple) -> str:
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            # A tagged-union member (sources, conditions): pydantic puts the tag in the loc.
            model = None
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if model is None:
        return "see config/lyssna.example.yaml"
    return ", ".join(model.model_fields)


def _format_errors(source: str, lines: dict[tuple, int], exc: ValidationError) -> str:
    msgs = []
    for err in exc.errors():
        # Tagged unions add the tag name ("rss", "count") to the location; it is not a key.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        ctx_err = err.get("ctx", {}).get("error")
        if isinstance(ctx_err, _RefError):
            loc, what, fix = ctx_err.loc, ctx_err.message, ctx_err.fix
        else:
            what = err["msg"]
            fix = _FIXES.get(err["type"], "see config/lyssna.example.yaml for the expected form")
            if "{allowed}" in fix:
                fix = fix.format(allowed=_allowed_keys(loc))
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        line = _nearest_line(lines, loc)
        where = f"{source}:{line}" if line else source
        msgs.append(f"{where}: {key or '(top level)'}: {what}. Fix: {fix}.")
    return "invalid configuration:\n  " + "\n  ".join(msgs)


_UNION_TAGS = {"rss", "mastodon", "bluesky", "file", "count", "ratio", "spike"}


def _set_path(data: dict, path: tuple[str, ...], value: str) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            return  # the file's own error will be reported by validation
    data[path[-1]] = value


def load_settings(path: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (default: ``$LYSSNA_CONFIG``) and the environment.

    Without any file the defaults run a local stack with an empty watchlist.
    """
    env = os.environ if env is None else env
    path = path or env.get("LYSSNA_CONFIG")
    data: Any = {}
    lines: dict[tuple, int] = {}
    source = "<defaults>"
    if path:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found. Fix: point LYSSNA_CONFIG at an existing "
                              f"file, e.g. config/lyssna.example.yaml") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source}: not UTF-8 ({e.reason} at byte {e.start}). Fix: save the file as UTF-8") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            raise ConfigError(f"{where}: YAML syntax error: {getattr(e, 'problem', e)}. "
                              f"Fix: check indentation and quoting around that line") from None
        lines = _line_index(node)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}:1: the top level must be a mapping with keys like "
                              f"organizations, rules, webhooks. Fix: see config/lyssna.example.yaml")
    for var, key_path in ENV_OVERRIDES.items():
        if env.get(var):
            _set_path(data, key_path, env[var])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(source, lines, e)) from None
    return settings.model_copy(update=_api_keys(env))


def _api_keys(env: Mapping[str, str]) -> dict[str, Any]:
    """``api_keys`` and ``scoped_api_keys`` from the variables in ``auth.KEY_VARIABLES``."""
    scoped: dict[str, list[str]] = {}
    every: list[str] = []
    for var, scopes in KEY_VARIABLES.items():
        try:
            keys = parse_key_list(var, env.get(var, ""))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if var == ALL_SCOPES_VAR:
            every = keys
        else:
            for scope in scopes:
                scoped.setdefault(scope, []).extend(keys)
    return {"api_keys": every, "scoped_api_keys": scoped}

