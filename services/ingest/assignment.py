"""Which ingest replica polls which configured source: Kafka's group membership
decides, fencing tokens in Redis keep a stale owner's cursor out.

Every replica reads the same ``sources:``, so each can number them the same
way: the sources' cursor keys, sorted, are slots 0..n-1 (``slots``). Slot k is
partition k of a small internal topic that carries no records; every replica
joins one consumer group on it (``ingest.connectors_group``), and the replica
Kafka assigns partition k runs source k. That is Kafka's own coordinator (the
same one that shares ``lyssna.posts.raw`` between classify workers), not a
home-made one: a replica that dies stops heartbeating, the broker drops it after
``ingest.connectors_session_timeout``, and the partitions it held are assigned
to the replicas still alive. A replica that stops cleanly leaves the group at
once and the others learn of it at their next heartbeat (a third of the
timeout), so its sources move without waiting for the timeout. The assignment is
eager: every member stops its connectors before a rebalance (``on_partitions_
revoked``) and starts the ones it is given after it, so two live members never
run one source at the same time.

A replica that Kafka has dropped but that is still running (a long pause, a
network split from the broker but not from Redis) does not know yet. Its cursor
writes are fenced: whoever starts a source first takes a token from a counter
in Redis (``INCR``), and a cursor is written only by a Lua script that checks
the token is still the newest. A stale owner's write is refused (``Fenced``),
so a cursor never moves backwards under the new owner; the stale owner stops
the source and claims it again only after a session timeout, by when Kafka has
told it whether the source is still its own. The posts a stale owner produced
before it was fenced carry the same ids as the new owner's, and dedup
(``dedup.py``) keeps the topic at one copy of each.

Guarantees, in short: Kafka's membership gives "one live replica per source"
and "taken over within about a session timeout plus a heartbeat"; the token
gives "a cursor is only written by the newest owner"; the runner storing
cursors only after the acks gives "nothing lost on takeover" (the new owner
re-reads from the last stored cursor); dedup gives "nothing repeated on the
topic" for what was re-read, except a post whose produce was acknowledged but
not yet confirmed in Redis when its replica died (at-least-once, as for any
crash; downstream ids absorb it).

Replicas must run the same ``sources:`` to agree on the slots; during a
rolling change of the list, two replicas may briefly number a source
differently and both run it, which the token and dedup make harmless.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from lyssna.common.kafka_admin import resolve_replication

from .connectors.base import CursorStore, backoff_delay

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ pure logic


def group_name(key_prefix: str) -> str:
    """The default group (and topic) name: replicas that share cursors (one Redis
    key prefix) are the replicas that must share the sources. ``lyssna:`` gives
    ``lyssna.ingest-connectors``; characters Kafka does not allow become dots."""
    return re.sub(r"[^A-Za-z0-9._-]", ".", key_prefix) + "ingest-connectors"


def slots(cursor_keys: Iterable[str]) -> dict[str, int]:
    """Slot (partition) of each source, by its cursor key. Sorted keys rather than
    the config order, so reordering ``sources:`` moves nothing; one key configured
    twice is one slot."""
    return {key: i for i, key in enumerate(sorted(set(cursor_keys)))}


def owned(slot_of: Mapping[str, int], partitions: Iterable[int]) -> set[str]:
    """The cursor keys of the sources whose slots are among ``partitions``. A
    partition without a source (the topic has more than there are sources) is
    simply idle."""
    mine = set(partitions)
    return {key for key, slot in slot_of.items() if slot in mine}


def group_timing(session_timeout_s: float) -> dict[str, int]:
    """aiokafka's timing keywords for a session timeout: heartbeats three times per
    session (Kafka's usual ratio), so a live member is never dropped for one late
    heartbeat and a member left by a rebalance learns of it within a third."""
    session_ms = int(session_timeout_s * 1000)
    return {"session_timeout_ms": session_ms, "heartbeat_interval_ms": max(100, session_ms // 3)}


# ------------------------------------------------------------------ fenced cursors


class Fenced(Exception):
    """Another replica claimed the source after this one: its cursor is not ours to write."""


# Write the cursor only while the caller's token is the newest claim.
_FENCED_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class FencedCursorStore(CursorStore):
    """Cursors as in :class:`CursorStore`, written only under the newest claim.

    ``claim(key)`` takes the next token of the source (``INCR``, so tokens only
    grow, whoever takes them); ``set`` writes through a Lua script that compares
    the token first, atomically. Claims are kept per store, so one store is one
    replica."""

    def __init__(self, client: aioredis.Redis, prefix: str):
        super().__init__(client, prefix)
        self._fence_prefix = f"{prefix}ingest:cursor-fence:"
        self._tokens: dict[str, int] = {}
        self._script = client.register_script(_FENCED_SET)

    async def claim(self, key: str) -> int:
        token = int(await self._r.incr(self._fence_prefix + key))
        self._tokens[key] = token
        return token

    async def set(self, key: str, value: str) -> None:
        token = self._tokens.get(key)
        if token is None or not await self._script(keys=[self._fence_prefix + key, self._prefix + key],
                                                    args=[token, value.encode()]):
            raise Fenced(f"cursor {key}: claimed by another replica since token {token}")


# ------------------------------------------------------------------ group membership


class ConnectorGroup:
    """This replica's membership in the connectors' consumer group.

    ``start_keys`` / ``stop_keys`` are the runner's: called with the cursor keys
    Kafka assigns to or takes from this replica. The consumer never reads a record
    (the topic has none); its loop only keeps the membership alive."""

    def __init__(self, bootstrap_servers: str, group: str, slot_of: Mapping[str, int], *,
                 session_timeout_s: float, replication_factor: int | str = "auto",
                 min_insync_replicas: int | str = "auto",
                 start_keys: Callable[[set[str]], Awaitable[None]],
                 stop_keys: Callable[[], Awaitable[None]]):
        self.bootstrap_servers = bootstrap_servers
        self.group = group
        self.slot_of = dict(slot_of)
        self.session_timeout_s = session_timeout_s
        self._layout = (replication_factor, min_insync_replicas)
        self._start_keys = start_keys
        self._stop_keys = stop_keys
        self._task: asyncio.Task | None = None
        self._leaving = False
        #: Cursor keys assigned to this replica now (for logs, metrics and tests).
        self.assigned: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._membership(), name="connector-group")

    async def stop(self) -> None:
        """Leave the group (the consumer's stop sends LeaveGroup), so the sources move
        to another replica without waiting for the session timeout. The caller stops
        the connectors first."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _membership(self) -> None:
        failures = 0
        while True:
            try:
                await asyncio.to_thread(self._ensure_topic)
                await self._member()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Kafka down: no source runs here until it is back
                failures += 1
                delay = backoff_delay(failures, 1.0, 30.0)
                log.warning("connector group membership failed; retrying", extra={
                    "group": self.group, "error": f"{type(e).__name__}: {e}", "retry_in_s": round(delay, 2)})
                await self._stop_keys()
                self.assigned = set()
                await asyncio.sleep(delay)

    async def _member(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group, client_id=f"{self.group}-member",
            enable_auto_commit=False, auto_offset_reset="latest",
            # A revoke waits for a batch on its way to Kafka (runner.STOP_GRACE_S):
            # the broker must not drop a member for that.
            rebalance_timeout_ms=int((self.session_timeout_s + 30) * 1000),
            **group_timing(self.session_timeout_s))
        consumer.subscribe([self.group], listener=_Listener(self))
        try:
            await consumer.start()
            while True:
                await consumer.getmany(timeout_ms=1000)
        finally:
            # Connectors stop before the member leaves (never two replicas on one
            # source), and an assignment that completes while it leaves is ignored.
            self._leaving = True
            try:
                await self._stop_keys()
                self.assigned = set()
                await consumer.stop()
            finally:
                self._leaving = False

    async def _assigned(self, partitions: set[int]) -> None:
        if self._leaving:
            return
        self.assigned = owned(self.slot_of, partitions)
        log.info("connector sources assigned", extra={
            "group": self.group, "partitions": sorted(partitions), "sources": len(self.assigned)})
        await self._start_keys(set(self.assigned))

    async def _revoked(self) -> None:
        await self._stop_keys()
        self.assigned = set()

    def _ensure_topic(self) -> None:
        """One partition per slot; a topic with fewer (a source was added) gets more.
        Partitions are never removed by Kafka, so extra ones stay idle."""
        from kafka.admin import KafkaAdminClient
        from kafka.errors import InvalidPartitionsError, TopicAlreadyExistsError

        want = max(1, len(set(self.slot_of.values())))
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=f"{self.group}-admin",
                                 request_timeout_ms=10_000)
        try:
            rf, isr = resolve_replication(self.bootstrap_servers, *self._layout, admin=admin)  # "auto" decided
            try:
                admin.create_topics({self.group: {"num_partitions": want, "replication_factor": rf,
                                                  "configs": {"min.insync.replicas": str(isr)}}})
                return
            except TopicAlreadyExistsError:
                pass
            described = admin.describe_topics([self.group])
            have = len(described[0]["partitions"]) if described else 0
            if have < want:
                try:
                    admin.create_partitions({self.group: want})
                except InvalidPartitionsError:
                    pass  # another replica grew it first
        finally:
            admin.close()


class _Listener(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, awaited by its coordinator: revoked before the
    group re-forms, assigned after it."""

    def __init__(self, group: ConnectorGroup):
        self._group = group

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._group._revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._group._assigned({tp.partition for tp in assigned})
