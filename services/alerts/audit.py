"""The audit log: who (which API key, by its id) created or changed rules, silences and
webhooks, and who erased data.

Kept in Redis as one sorted set scored by time, bounded twice: entries older than
``retention.audit_log`` are dropped, and at most ``retention.audit_entries`` are
kept. An entry names the key by :func:`lyssna.common.auth.key_id`, never the
key, and an erasure's entry says what kind of erasure and how much was removed,
never whose: an audit log that named the erased author would keep what the
erasure removed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from lyssna.common.config import RetentionSettings
from lyssna.common.contracts import utcnow

from .store import _ts


class AuditEntry(BaseModel):
    id: str
    at: datetime
    actor: str = Field(description="the API key's id (key_ + 12 hex digits of its SHA-256), or cli:<user>")
    action: str = Field(description="e.g. rule.create, silence.delete, webhook.disable, erasure")
    target: str | None = Field(None, description="the rule, silence or webhook; for an erasure its kind")
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditLog:
    def __init__(self, redis: Redis, alerts_prefix: str, retention: RetentionSettings):
        self.redis = redis
        self.key = f"{alerts_prefix}audit"
        self.retention_s = int(retention.audit_log.total_seconds())
        self.max_entries = retention.audit_entries

    async def record(self, actor: str, action: str, target: str | None = None,
                     detail: dict[str, Any] | None = None) -> AuditEntry:
        now = utcnow()
        entry = AuditEntry(id=f"aud_{uuid.uuid4().hex[:16]}", at=now, actor=actor, action=action, target=target,
                           detail=detail or {})
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.key, {entry.model_dump_json(): _ts(now)})
        pipe.zremrangebyscore(self.key, "-inf", f"({_ts(now) - self.retention_s}")
        pipe.zremrangebyrank(self.key, 0, -1 - self.max_entries)
        pipe.expire(self.key, self.retention_s)
        await pipe.execute()
        return entry

    async def entries(self, limit: int = 100, before: datetime | None = None) -> list[AuditEntry]:
        """Newest first; ``before`` pages back (the ``at`` of the last entry seen)."""
        top = f"({_ts(before)}" if before else "+inf"
        cutoff = _ts(utcnow()) - self.retention_s
        raws = await self.redis.zrevrangebyscore(self.key, top, cutoff, start=0, num=limit)
        return [AuditEntry.model_validate_json(r) for r in raws]
