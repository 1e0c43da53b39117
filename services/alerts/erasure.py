"""Erasure: remove every copy of one person's posts, or of one post, that Lyssna keeps
outside Kafka's log (``lyssna forget`` and ``POST /v1/erasures``).

Where post content lives in Redis (all under ``<prefix>alerts:``):

- ``sample_pool:<org>``: recent posts per organization, to quote in alerts;
- ``event_samples:<event id>``: the samples of a stored alert event (the API's
  history and alert details, and the body of every delivery, retry and
  redelivery of that event: delivery records hold no body, it is rendered from
  the event when sent);
- the ``pending`` event of an alert in ``state``, until it is published;
- ``authored:<hash>``: which sampled post ids an author wrote (for this module).

An erased post id is also remembered in ``erased`` (a sorted set scored by when
the last Kafka copy is gone), so a record read again from Kafka before its
retention ends cannot bring the text back into Redis. Ingest's dedup entry of a
post holds no content (the id only) and is kept: it stops the same post from
being ingested again. What stays in Kafka's topics until their retention runs
out is listed, with the date.

The matching is pure (``Target``); ``erase`` is the I/O around it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lyssna.common.config import Settings
from lyssna.common.contracts import AlertEvent, ClassifiedPost, SamplePost, utcnow
from lyssna.common.kafka_admin import longest_stay_ms, topic_retention
from lyssna.common.pseudonyms import author_pseudonymizer, canonical_handle

from .audit import AuditLog
from .store import AlertsStore, StoredAlert, _ts

# Replace a hash field or a key only if it still holds what was read, so an erasure
# never overwrites a concurrent write (a new decision, a resolved alert).
_HSET_IF = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end
return 0
"""
_SET_IF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
return 1
"""


@dataclass(frozen=True)
class Target:
    """What to erase: posts by any of ``authors`` (the pseudonyms of one handle, or the
    handle itself where authors are kept), or the posts ``post_ids``."""

    kind: str  # "author" or "post"
    authors: frozenset[str] = frozenset()  # canonical forms (pseudonyms are canonical already)
    post_ids: frozenset[str] = frozenset()

    def wrote(self, post: ClassifiedPost) -> bool:
        return post.id in self.post_ids or (post.author is not None and canonical_handle(post.author) in self.authors)

    def with_posts(self, ids: Iterable[str]) -> "Target":
        return Target(self.kind, self.authors, self.post_ids | frozenset(ids))

    def keep_samples(self, samples: list[SamplePost]) -> list[SamplePost]:
        return [s for s in samples if s.id not in self.post_ids]


def author_target(handle: str, settings: Settings, env: Mapping[str, str]) -> Target:
    """The author as stored: with pseudonymous authors, its pseudonym under every
    configured key (so posts signed before a key rotation are found too); with
    ``privacy.authors: keep``, the handle as sources write it (with and without @)."""
    authors = author_pseudonymizer(settings.privacy.authors, env)
    if authors is not None:
        return Target("author", frozenset(authors.every_pseudonym(handle).values()))
    return Target("author", frozenset({canonical_handle(handle)}))


def post_target(post_id: str) -> Target:
    return Target("post", post_ids=frozenset({post_id}))


class KafkaRemainder(BaseModel):
    topic: str
    retention: str
    gone_by: datetime


class ErasureReport(BaseModel):
    """What was removed, and what Lyssna cannot remove before Kafka's retention does."""

    target: str
    erased_at: datetime
    post_ids: list[str]
    sample_pool_posts: int
    event_samples: int
    events: int
    pending_event_samples: int
    active_alert_samples: int
    author_index_entries: int
    dedup_entries_kept: int
    kafka: list[KafkaRemainder]
    notes: list[str]

    @property
    def removed(self) -> int:
        return self.sample_pool_posts + self.event_samples + self.pending_event_samples + self.active_alert_samples


@dataclass
class _Tally:
    post_ids: set[str] = field(default_factory=set)
    pool: int = 0
    event_samples: int = 0
    events: int = 0
    pending: int = 0
    active: int = 0
    index: int = 0


def kafka_remainders(topics_ms: Mapping[str, int], now: datetime) -> list[KafkaRemainder]:
    """Each topic and when its last record written before ``now`` is deleted at the latest
    (retention plus the segment's roll time; -1: never)."""
    out = []
    for topic, ms in topics_ms.items():
        stay = longest_stay_ms(ms)
        out.append(KafkaRemainder(topic=topic, retention="forever" if ms < 0 else f"{ms / 86_400_000:g}d",
                                  gone_by=now + timedelta(milliseconds=stay) if stay >= 0 else datetime.max))
    return out


def lyssna_topics(settings: Settings) -> dict[str, int]:
    """The topics holding post text, with their configured retention.ms."""
    ms = settings.retention.topics_ms(settings.kafka.topics)
    ms[f"{settings.alerts.app_id}-mentions"] = ms[settings.kafka.topics.posts_classified]
    return ms


class Eraser:
    def __init__(self, store: AlertsStore, *, ingest_prefix: str):
        self.store = store
        self.redis = store.redis
        self.ingest_prefix = ingest_prefix
        self._hset_if = self.redis.register_script(_HSET_IF)
        self._set_if = self.redis.register_script(_SET_IF)

    async def erase(self, target: Target, kafka_ms: Mapping[str, int], now: datetime | None = None
                    ) -> ErasureReport:
        """Erase ``target`` everywhere in Redis; ``kafka_ms``: the topics holding post text
        and their retention.ms (as Kafka reports it, else as configured)."""
        now = now or utcnow()
        t = _Tally()
        target = target.with_posts(await self._indexed_posts(target, t))
        target = target.with_posts(await self._sample_pools(target, t))
        t.post_ids |= target.post_ids
        await self._remember_erased(target.post_ids, kafka_ms, now)
        await self._event_samples(target, t)
        await self._pending(target, t)
        await self._active(target, t)
        dedup = await self._dedup_kept(target.post_ids)
        notes = ["delivery records hold no body: each delivery, retry and redelivery renders the stored event, "
                 "whose samples are erased above"]
        if dedup:
            notes.append("ingest's dedup entries of these posts are kept (they hold only the id) so the "
                         "posts are not ingested again; they expire with ingest.dedup_ttl")
        return ErasureReport(target=target.kind, erased_at=now, post_ids=sorted(t.post_ids),
                             sample_pool_posts=t.pool, event_samples=t.event_samples, events=t.events,
                             pending_event_samples=t.pending, active_alert_samples=t.active,
                             author_index_entries=t.index, dedup_entries_kept=dedup,
                             kafka=kafka_remainders(kafka_ms, now), notes=notes)

    async def _scan(self, *parts: str) -> list[bytes]:
        return [k async for k in self.redis.scan_iter(match=self.store.k(*parts), count=500)]

    async def _indexed_posts(self, target: Target, t: _Tally) -> set[str]:
        ids: set[str] = set()
        for author in target.authors:
            key = self.store.author_key(author)
            members = {m.decode() for m in await self.redis.smembers(key)}
            if members:
                t.index += len(members)
                ids |= members
                await self.redis.delete(key)
        return ids

    async def _sample_pools(self, target: Target, t: _Tally) -> set[str]:
        ids: set[str] = set()
        for key in await self._scan("sample_pool", "*"):
            doomed = []
            for raw in await self.redis.zrange(key, 0, -1):
                try:
                    post = ClassifiedPost.from_bytes(raw)
                except ValueError:
                    continue
                if target.wrote(post):
                    doomed.append(raw)
                    ids.add(post.id)
            if doomed:
                t.pool += int(await self.redis.zrem(key, *doomed))
        return ids

    async def _remember_erased(self, ids: set[str], kafka_ms: Mapping[str, int], now: datetime) -> None:
        if not ids:
            return
        stays = [longest_stay_ms(ms) for ms in kafka_ms.values()] or [0]
        # -1 (a topic kept forever): remember for the longest finite stay, at least a year.
        stay_ms = max(stays) if min(stays) >= 0 else max(max(stays), 366 * 86_400_000)
        until = _ts(now) + stay_ms / 1000
        key = self.store.k("erased")
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {i: until for i in ids}, gt=True)  # GT still adds new members
        pipe.zremrangebyscore(key, "-inf", _ts(now))
        pipe.expire(key, int(stay_ms / 1000) + 60, gt=True)
        pipe.expire(key, int(stay_ms / 1000) + 60, nx=True)
        await pipe.execute()

    async def _event_samples(self, target: Target, t: _Tally) -> None:
        for key in await self._scan("event_samples", "*"):
            raw = await self.redis.get(key)
            if raw is None:
                continue
            samples = [SamplePost.model_validate(s) for s in json.loads(raw)]
            kept = target.keep_samples(samples)
            if len(kept) != len(samples):
                new = json.dumps([s.model_dump(mode="json") for s in kept]) if kept else ""
                if await self._set_if(keys=[key], args=[raw, new]):
                    t.event_samples += len(samples) - len(kept)
                    t.events += 1
        # Events stored before samples had their own key carry them inline.
        for key in await self._scan("event", "*"):
            raw = await self.redis.get(key)
            event = AlertEvent.from_bytes(raw) if raw else None
            if event is None or not event.samples:
                continue
            kept = target.keep_samples(event.samples)
            if len(kept) != len(event.samples):
                new = event.model_copy(update={"samples": kept}).model_dump_json()
                if await self._set_if(keys=[key], args=[raw, new]):
                    t.event_samples += len(event.samples) - len(kept)
                    t.events += 1

    async def _pending(self, target: Target, t: _Tally) -> None:
        key = self.store.k("state")
        for fld, raw in (await self.redis.hgetall(key)).items():
            stored = StoredAlert.model_validate_json(raw)
            event = stored.pending_event
            if event is None:
                continue
            kept = target.keep_samples(event.samples)
            if len(kept) != len(event.samples):
                scrubbed = stored.model_copy(update={"pending": event.model_copy(update={"samples": kept})
                                                     .model_dump_json()})
                if await self._hset_if(keys=[key], args=[fld, raw, scrubbed.model_dump_json()]):
                    t.pending += len(event.samples) - len(kept)

    async def _active(self, target: Target, t: _Tally) -> None:
        # Active alerts are stored without samples; ones written before that still carry them.
        key = self.store.k("active")
        for fld, raw in (await self.redis.hgetall(key)).items():
            entry: dict[str, Any] = json.loads(raw)
            samples = [SamplePost.model_validate(s) for s in entry.get("event", {}).get("samples", [])]
            kept = target.keep_samples(samples)
            if len(kept) != len(samples):
                entry["event"]["samples"] = [s.model_dump(mode="json") for s in kept]
                if await self._hset_if(keys=[key], args=[fld, raw, json.dumps(entry)]):
                    t.active += len(samples) - len(kept)

    async def _dedup_kept(self, ids: set[str]) -> int:
        if not ids:
            return 0
        return int(await self.redis.exists(*(f"{self.ingest_prefix}ingest:seen:{i}" for i in ids)))


def format_report(report: ErasureReport) -> str:
    """The report for a person (the CLI's output)."""
    lines = [f"erased ({report.target}) at {report.erased_at:%Y-%m-%d %H:%M} UTC: "
             f"{len(report.post_ids)} post(s) found",
             f"  removed: {report.sample_pool_posts} post(s) from the sample pool, "
             f"{report.event_samples} sample(s) from {report.events} stored alert event(s), "
             f"{report.pending_event_samples} from unpublished events, "
             f"{report.active_alert_samples} from active alerts, {report.author_index_entries} author index entries"]
    lines += [f"  post id: {i}" for i in report.post_ids]
    lines += [f"  note: {n}" for n in report.notes]
    lines.append("still in Kafka until its retention runs out (Lyssna cannot delete single records there):")
    lines += [f"  {k.topic} (retention {k.retention}): gone by {k.gone_by:%Y-%m-%d %H:%M} UTC" for k in report.kafka]
    return "\n".join(lines)


async def kafka_retention(settings: Settings) -> dict[str, int]:
    """The topics holding post text with the retention.ms Kafka reports (where it
    answers) or the configured one: the later of the two is what the report must say."""
    configured = lyssna_topics(settings)
    try:
        actual = await asyncio.to_thread(topic_retention, settings.kafka.bootstrap_servers, configured, 5000)
    except Exception:  # Kafka away: the configured values, which drift warnings keep honest
        actual = {}
    return {t: actual[t] if t in actual and (actual[t] < 0 or actual[t] > ms) else ms
            for t, ms in configured.items()}


async def forget(settings: Settings, store: AlertsStore, target: Target, actor: str,
                 audit: AuditLog | None = None) -> ErasureReport:
    """Erase ``target`` and write the audit entry (what kind, how much; never whose)."""
    report = await Eraser(store, ingest_prefix=settings.redis.key_prefix).erase(
        target, await kafka_retention(settings))
    audit = audit or AuditLog(store.redis, store.p, settings.retention)
    await audit.record(actor, "erasure", target.kind, {"posts": len(report.post_ids), "removed": report.removed})
    return report


async def forget_with_redis(settings: Settings, target: Target, actor: str) -> ErasureReport:
    """``forget`` with its own Redis connection (the ``lyssna forget`` command)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis.url, socket_timeout=10, socket_connect_timeout=5)
    try:
        store = AlertsStore(redis, settings.redis.key_prefix, history_retention=settings.retention.alert_history,
                            sample_retention=settings.retention.sample_texts)
        return await forget(settings, store, target, actor)
    finally:
        await redis.aclose()
