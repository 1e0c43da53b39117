"""Everything the alerts service keeps in Redis, behind one small class.

Redis holds what must survive a restart and what the API shows: rules made
through the API, each (rule, org) alert's state with its not-yet-published
outbox event, active alerts, event history, silences, delivery records with
every attempt, the retry queue (a sorted set of due times) and disabled
webhooks. Window counts are not here: they live in the Faust table.

Keys all start with ``<redis.key_prefix>alerts:``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from lyssna.common.config import RuleConfig
from lyssna.common.contracts import AlertEvent, AlertState, ClassifiedPost, SamplePost, utcnow
from lyssna.common.pseudonyms import canonical_handle

from .rules import RuleState
from .silences import Silence
from .state_script import SAVE_STATE

SAMPLES_KEPT = 200  # recent posts per organization to pick alert samples from
SAMPLE_TEXT_CHARS = 1000


def _ts(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


# ---------------------------------------------------------------- delivery records

class DeliveryStatus(StrEnum):
    pending = "pending"        # queued for its first attempt (or a redelivery)
    retrying = "retrying"      # an attempt failed; the next one is scheduled
    delivered = "delivered"
    failed = "failed"          # the receiver refused for good (4xx) or the URL is unusable
    dead = "dead"              # every attempt of the schedule failed
    disabled = "disabled"      # the webhook is disabled (410 or an operator)
    silenced = "silenced"


OPEN_STATUSES = frozenset({DeliveryStatus.pending, DeliveryStatus.retrying})


class Attempt(BaseModel):
    model_config = ConfigDict(extra="ignore")

    number: int
    started_at: datetime
    finished_at: datetime | None = None
    # in_flight while the request runs; interrupted when the worker died during it
    outcome: str = "in_flight"
    status_code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    next_attempt_at: datetime | None = None


class DeliveryRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    event_id: str
    alert_id: str
    rule: str
    org: str
    state: AlertState
    webhook: str
    status: DeliveryStatus
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    # Index into attempts where the current retry schedule began (moves on redelivery).
    schedule_start: int = 0
    reason: str | None = None
    silence_id: str | None = None
    deadlettered: bool = False
    redeliveries: int = 0

    @property
    def attempts_in_schedule(self) -> int:
        return len(self.attempts) - self.schedule_start


def delivery_id(event_id: str, webhook: str) -> str:
    return f"{event_id}:{webhook}"


class StoredAlert(BaseModel):
    """One (rule, org) alert's engine state plus its unpublished outbox event."""

    rule: str
    org: str
    state: dict[str, Any]
    pending: str | None = None  # AlertEvent JSON written before publishing, cleared after
    # Bumped by every write; a write names the version it was decided on (see .state_script).
    version: int = 0

    @property
    def rule_state(self) -> RuleState:
        return RuleState.from_dict(self.state)

    @property
    def pending_event(self) -> AlertEvent | None:
        return AlertEvent.from_bytes(self.pending) if self.pending else None


# Create a delivery record only once (it is keyed by event and webhook, so a
# re-read outbox record changes nothing) and, in the same step, queue it: a
# crash between the two would leave a record that nothing ever attempts.
_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[5]) then
  redis.call('SADD', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  if ARGV[2] == '1' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
  return 1
end
return 0
"""

# Add a post to an organization's sample pool (unless it was erased), drop what is
# older than the sample retention or beyond the newest ARGV[4], and index it under
# its author for erasure. One round trip: it runs for every counted mention.
_ADD_SAMPLE = """
local erased = redis.call('ZSCORE', KEYS[3], ARGV[6])
if erased and tonumber(erased) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[7] == '1' then
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
end
return 1
"""


def _samples_json(samples: list[SamplePost]) -> str:
    return json.dumps([s.model_dump(mode="json") for s in samples], ensure_ascii=False)


def _parse_samples(raw: bytes | None) -> list[SamplePost]:
    return [SamplePost.model_validate(s) for s in json.loads(raw)] if raw else []


# Take due deliveries and push their due time to the end of the lease: if this
# worker dies mid-attempt, the delivery becomes due again when the lease ends.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""


class AlertsStore:
    def __init__(self, redis: Redis, key_prefix: str, *, history_retention: timedelta = timedelta(days=30),
                 sample_retention: timedelta = timedelta(days=7)):
        self.redis = redis
        self.p = f"{key_prefix}alerts:"
        self.retention_s = max(int(history_retention.total_seconds()), 60)
        # Post texts (the sample pool, events' samples) never outlive the alert history.
        self.sample_retention_s = min(max(int(sample_retention.total_seconds()), 60), self.retention_s)
        self._add_sample = redis.register_script(_ADD_SAMPLE)
        self._create = redis.register_script(_CREATE)
        self._claim = redis.register_script(_CLAIM)
        self._save_state = redis.register_script(SAVE_STATE)

    def k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # ------------------------------------------------------------ rules from the API

    async def api_rules(self) -> dict[str, str]:
        """Rule name -> stored JSON (validated by the caller against the current config)."""
        raw = await self.redis.hgetall(self.k("rules"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def get_api_rule(self, name: str) -> str | None:
        raw = await self.redis.hget(self.k("rules"), name)
        return raw.decode() if raw else None

    async def create_api_rule(self, rule: RuleConfig) -> bool:
        return bool(await self.redis.hsetnx(self.k("rules"), rule.name, rule.model_dump_json()))

    async def replace_api_rule(self, rule: RuleConfig) -> None:
        await self.redis.hset(self.k("rules"), rule.name, rule.model_dump_json())

    async def delete_api_rule(self, name: str) -> bool:
        removed = await self.redis.hdel(self.k("rules"), name)
        if removed:
            await self.forget_rule(name)
        return bool(removed)

    # ------------------------------------------------------------ alert state and outbox

    @staticmethod
    def _state_field(rule: str, org: str) -> str:
        return f"{rule}\x1f{org}"

    async def alerts(self) -> dict[tuple[str, str], StoredAlert]:
        raw = await self.redis.hgetall(self.k("state"))
        out = {}
        for v in raw.values():
            a = StoredAlert.model_validate_json(v)
            out[(a.rule, a.org)] = a
        return out

    async def _write_state(self, stored: StoredAlert, expected: int, active: str = "",
                           alert_id: str = "", active_json: str = "") -> bool:
        new = stored.model_copy(update={"version": expected + 1})
        return bool(await self._save_state(
            keys=[self.k("state"), self.k("active")],
            args=[self._state_field(stored.rule, stored.org), expected, new.model_dump_json(), active,
                  alert_id, active_json]))

    async def save_decision(self, rule: str, org: str, state: RuleState, event: AlertEvent, *,
                            expected_version: int) -> bool:
        """Remember the new state together with the event it emits, before the
        event is published: a crash after this publishes the same event again.

        Only if the alert is still at ``expected_version`` (the version the
        decision was made on); False when another replica wrote it meanwhile, and
        then nothing was written and the event must not be published."""
        stored = StoredAlert(rule=rule, org=org, state=state.to_dict(), pending=event.model_dump_json())
        if event.state == AlertState.firing:
            return await self._write_state(stored, expected_version, "set", event.alert_id, json.dumps({
                "alert_id": event.alert_id, "rule": rule, "org": org,
                "fired_at": event.occurred_at.isoformat(),
                # Without samples: an alert may fire for weeks; its samples expire with the event's.
                "event": event.model_dump(mode="json", exclude={"samples"})}))
        return await self._write_state(stored, expected_version, "del", event.alert_id)

    async def get_alert(self, rule: str, org: str) -> StoredAlert | None:
        raw = await self.redis.hget(self.k("state"), self._state_field(rule, org))
        return StoredAlert.model_validate_json(raw) if raw else None

    async def clear_pending(self, rule: str, org: str, event_id: str) -> StoredAlert | None:
        """Clear the pending event ``event_id`` once Kafka has it; the stored alert
        after clearing, or None when it is not (or no longer) pending.

        Compare-and-set, retried: a concurrent write of the alert (a new
        decision with its own pending event) is never overwritten by this one."""
        while True:
            stored = await self.get_alert(rule, org)
            pending = stored.pending_event if stored else None
            if pending is None or pending.event_id != event_id:
                return None
            cleared = stored.model_copy(update={"pending": None})
            if await self._write_state(cleared, stored.version):
                return cleared.model_copy(update={"version": stored.version + 1})

    async def forget_rule(self, rule: str) -> None:
        """Drop a deleted rule's alerts from the state and the active list."""
        states = await self.redis.hgetall(self.k("state"))
        pipe = self.redis.pipeline(transaction=True)
        for field, raw in states.items():
            if field.decode().split("\x1f", 1)[0] == rule:
                pipe.hdel(self.k("state"), field)
        for alert_id, raw in (await self.redis.hgetall(self.k("active"))).items():
            if json.loads(raw).get("rule") == rule:
                pipe.hdel(self.k("active"), alert_id)
        await pipe.execute()

    async def active_alerts(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.k("active"))
        items = [json.loads(v) for v in raw.values()]
        kept = await self.samples_of([a["event"]["event_id"] for a in items])
        for a in items:
            a["event"]["samples"] = [x.model_dump(mode="json") for x in kept.get(a["event"]["event_id"], [])]
        return sorted(items, key=lambda a: a["fired_at"], reverse=True)

    async def is_active(self, alert_id: str) -> bool:
        return bool(await self.redis.hexists(self.k("active"), alert_id))

    async def counting_since(self, now: datetime) -> datetime:
        """When this deployment began counting (the first start); baselines
        leave out windows before it."""
        key = self.k("since")
        await self.redis.set(key, now.isoformat(), nx=True)
        return datetime.fromisoformat((await self.redis.get(key)).decode())

    # ------------------------------------------------------------ sample posts

    # A sorted set by the time each post was added, so posts older than the sample
    # retention are dropped even while an organization keeps being mentioned (the
    # key's TTL alone would be renewed by every new post). The pre-retention list
    # under "samples:<org>" had no expiry: drop_legacy_samples deletes it at start.

    def author_key(self, author: str) -> str:
        """The index of an author's sampled post ids, for erasure by author. A hash of
        the author's canonical form (a pseudonym, or with privacy.authors: keep the
        handle), so no handle is ever part of a key name."""
        return self.k("authored", hashlib.sha256(canonical_handle(author).encode()).hexdigest()[:32])

    async def add_sample(self, org: str, post: ClassifiedPost) -> None:
        if len(post.text) > SAMPLE_TEXT_CHARS:
            post = post.model_copy(update={"text": post.text[:SAMPLE_TEXT_CHARS]})
        now = _ts(utcnow())
        author_key = self.author_key(post.author) if post.author else self.k("authored", "-")
        # The index outlives the pool by one sample retention: an event quoting a
        # post keeps its samples up to that long after the post left the pool.
        await self._add_sample(keys=[self.k("sample_pool", org), author_key, self.k("erased")],
                               args=[post.to_bytes(), now, now - self.sample_retention_s, SAMPLES_KEPT,
                                     self.sample_retention_s, post.id, "1" if post.author else "0",
                                     2 * self.sample_retention_s])

    async def recent_samples(self, org: str) -> list[ClassifiedPost]:
        out = []
        cutoff = _ts(utcnow()) - self.sample_retention_s
        for raw in await self.redis.zrevrangebyscore(self.k("sample_pool", org), "+inf", cutoff,
                                                     start=0, num=SAMPLES_KEPT):
            try:
                out.append(ClassifiedPost.from_bytes(raw))
            except ValueError:
                continue
        return out

    async def drop_legacy_samples(self) -> int:
        """Delete the sample lists kept before retention existed (they had no expiry)."""
        keys = [key async for key in self.redis.scan_iter(match=self.k("samples", "*"), count=500)]
        return int(await self.redis.delete(*keys)) if keys else 0

    # ------------------------------------------------------------ events and history

    async def record_event(self, event: AlertEvent) -> bool:
        """Keep an outbox event for history and for rendering its deliveries;
        True the first time this event id is seen."""
        now = utcnow()
        # The samples apart, for the shorter sample retention; the event stays for the history.
        new = await self.redis.set(self.k("event", event.event_id),
                                   event.model_copy(update={"samples": []}).to_bytes(), nx=True, ex=self.retention_s)
        samples = await self._not_erased(event.samples) if new else []
        if samples:
            await self.redis.set(self.k("event_samples", event.event_id), _samples_json(samples),
                                 ex=self.sample_retention_s)
        if new:
            ts = _ts(event.occurred_at)
            pipe = self.redis.pipeline(transaction=True)
            pipe.zadd(self.k("history"), {event.event_id: ts})
            pipe.zremrangebyscore(self.k("history"), "-inf", _ts(now) - self.retention_s)
            pipe.zadd(self.k("alert", event.alert_id), {event.event_id: ts})
            pipe.expire(self.k("alert", event.alert_id), self.retention_s)
            await pipe.execute()
        return bool(new)

    async def get_event(self, event_id: str) -> AlertEvent | None:
        events = await self._events([event_id.encode()])
        return events[0] if events else None

    async def _events(self, ids: list[bytes]) -> list[AlertEvent]:
        """The stored events with their samples, while the sample retention lasts."""
        if not ids:
            return []
        names = [i.decode() for i in ids]
        raws = await self.redis.mget([self.k("event", i) for i in names])
        samples = await self.redis.mget([self.k("event_samples", i) for i in names])
        return [AlertEvent.from_bytes(r).model_copy(update={"samples": _parse_samples(x)})
                for r, x in zip(raws, samples) if r]

    async def _not_erased(self, samples: list[SamplePost]) -> list[SamplePost]:
        """``samples`` less the erased posts: an event read again from Kafka after an
        erasure must not bring them back."""
        if not samples:
            return []
        until = await self.redis.zmscore(self.k("erased"), [x.id for x in samples])
        now = _ts(utcnow())
        return [x for x, t in zip(samples, until) if t is None or t <= now]

    async def samples_of(self, event_ids: list[str]) -> dict[str, list[SamplePost]]:
        """Event id -> its samples still kept (the active alerts list shows them)."""
        if not event_ids:
            return {}
        raws = await self.redis.mget([self.k("event_samples", i) for i in event_ids])
        return dict(zip(event_ids, (_parse_samples(r) for r in raws)))

    async def history(self, limit: int = 100, before: datetime | None = None) -> list[AlertEvent]:
        top = f"({_ts(before)}" if before else "+inf"
        ids = await self.redis.zrevrangebyscore(self.k("history"), top, "-inf", start=0, num=limit)
        return await self._events(ids)

    async def alert_events(self, alert_id: str) -> list[AlertEvent]:
        return await self._events(await self.redis.zrange(self.k("alert", alert_id), 0, -1))

    # ------------------------------------------------------------ silences

    async def silences(self) -> list[Silence]:
        raw = await self.redis.hgetall(self.k("silences"))
        return sorted((Silence.model_validate_json(v) for v in raw.values()), key=lambda s: s.starts_at)

    async def get_silence(self, silence_id: str) -> Silence | None:
        raw = await self.redis.hget(self.k("silences"), silence_id)
        return Silence.model_validate_json(raw) if raw else None

    async def put_silence(self, silence: Silence) -> None:
        await self.redis.hset(self.k("silences"), silence.id, silence.model_dump_json())

    async def delete_silence(self, silence_id: str) -> bool:
        return bool(await self.redis.hdel(self.k("silences"), silence_id))

    # ------------------------------------------------------------ deliveries and the retry queue

    async def create_delivery(self, record: DeliveryRecord, due: datetime | None) -> bool:
        """Store a new delivery record (no-op if it exists) and queue it when ``due``."""
        return bool(await self._create(
            keys=[self.k("delivery", record.id), self.k("due"), self.k("alert_deliveries", record.alert_id)],
            args=[record.model_dump_json(), "1" if due else "0", _ts(due) if due else 0, record.id,
                  self.retention_s]))

    async def get_delivery(self, did: str) -> DeliveryRecord | None:
        raw = await self.redis.get(self.k("delivery", did))
        return DeliveryRecord.model_validate_json(raw) if raw else None

    async def save_delivery(self, record: DeliveryRecord) -> None:
        record.updated_at = utcnow()
        await self.redis.set(self.k("delivery", record.id), record.model_dump_json(), ex=self.retention_s)

    async def deliveries_for_alert(self, alert_id: str) -> list[DeliveryRecord]:
        ids = sorted(i.decode() for i in await self.redis.smembers(self.k("alert_deliveries", alert_id)))
        if not ids:
            return []
        raws = await self.redis.mget([self.k("delivery", i) for i in ids])
        records = [DeliveryRecord.model_validate_json(r) for r in raws if r]
        return sorted(records, key=lambda r: (r.created_at, r.webhook))

    async def schedule(self, did: str, due: datetime) -> None:
        await self.redis.zadd(self.k("due"), {did: _ts(due)})

    async def unschedule(self, did: str) -> None:
        await self.redis.zrem(self.k("due"), did)

    async def claim_due(self, now: datetime, lease: timedelta, limit: int) -> list[str]:
        if limit <= 0:
            return []
        ids = await self._claim(keys=[self.k("due")], args=[_ts(now), _ts(now + lease), limit])
        return [i.decode() for i in ids]

    async def queue_depth(self) -> int:
        return int(await self.redis.zcard(self.k("due")))

    async def due_at(self, did: str) -> datetime | None:
        score = await self.redis.zscore(self.k("due"), did)
        return datetime.fromtimestamp(score, timezone.utc) if score is not None else None

    # ------------------------------------------------------------ webhook endpoints

    async def disabled_webhooks(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.k("disabled"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def disable_webhook(self, name: str, reason: str) -> bool:
        """True if this call disabled it (it was enabled)."""
        return bool(await self.redis.hsetnx(self.k("disabled"), name, json.dumps(
            {"disabled_at": utcnow().isoformat(), "reason": reason})))

    async def enable_webhook(self, name: str) -> bool:
        return bool(await self.redis.hdel(self.k("disabled"), name))
