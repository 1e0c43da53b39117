"""Windowed mention counts in a Faust table that survives restarts through its changelog.

Two agents:

- ``route`` reads ``posts.classified`` (keyed by post id) and re-keys each post
  by organization into the internal ``<app_id>-mentions`` topic, one record per
  organization it mentions. Every count of one organization then comes from
  one partition, which is what a Faust table needs: its changelog partition is
  the partition of the record that changed it, so a key must always be written
  from the same partition to be recovered correctly.
- ``count`` adds each mention to the table, keyed ``<org>|<bucket start>``.
  A bucket (``alerts.bucket``, 1 minute by default) holds the cells of
  :func:`rules.scored_cell_keys` (:func:`rules.cell_keys` with score levels); beside it, one small ``<org>|<bucket start>#<post
  hash>`` key per post counted in it, so a post read twice (a restart replays
  everything after the last committed offset; ingest may also let a duplicate
  through) is counted once. The seen key lives in the bucket of the post's FIRST
  sighting, and a post is looked up across all its organization's buckets (an
  in-memory index, post hash -> first bucket, rebuilt from the seen keys and
  dropped with their bucket at ``alerts.retention``, which every rule window
  fits in). The bucket's own value also names its last post (and that post's
  author's new cells), since a crash can lose the seen key written after it: see
  :meth:`CountBuckets.add`. A post without ``created_at`` takes its event time from
  ``fetched_at``, and a re-sent or re-fetched copy carries a later one that can
  fall in another bucket of the same window. Each is its own table key because the changelog
  gets the whole value on every write: a list of hashes inside the bucket made
  the bytes written per mention grow with the bucket, quadratic in total.
  For the same reason each author (pseudonym) of a bucket has its own small key,
  ``<org>|<bucket start>@<author hash>``, holding the cells that author's posts
  fell in: it is written only when the author reaches a new cell in that bucket.
  Distinct authors are remembered exactly up to ``MAX_AUTHORS_PER_CELL`` per
  cell and bucket, so a window's count is exact up to that bound (a rule's
  ``min_authors`` cannot ask for more) and memory stays bounded under a flood.
  A HyperLogLog would bound memory too, but it estimates: "fires on 5 authors,
  not on 4" needs exact small counts, which a capped set gives.

Rules sum the buckets of their window in event time (``created_at`` of the
post, never later than now, so a wrong clock at the source cannot push counts
into a window that is not judged yet). Buckets older than ``alerts.retention``
are deleted as their organization's next mention goes by.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from prometheus_client.core import GaugeMetricFamily

from lyssna.common.config import MAX_MIN_AUTHORS, Settings
from lyssna.common.contracts import SENTIMENTS, ClassifiedPost, DeadLetter, as_utc, utcnow
from lyssna.common.kafka_admin import resolve_replication, topic_configs, wait_for_topics

from .faust_guards import confirmed_table_class, guarded_app_class
from .ownership import Ownership, partition_for_org
from .rules import CellKey, ScoredCellKey, cell_keys, scored_cell_keys
from .windows import EPOCH

log = logging.getLogger("lyssna.alerts.counts")

SERVICE = "alerts"
MAX_IDS_PER_BUCKET = 20_000  # beyond this a bucket still counts, it just stops remembering ids
_CELL_SEP = "|"
_SEEN_SEP = "#"  # "<org>|<start>#<hash>": a post counted in that bucket
_AUTHOR_SEP = "@"  # "<org>|<start>@<hash>": an author of posts counted in that bucket
MAX_AUTHORS_PER_CELL = MAX_MIN_AUTHORS  # authors remembered per cell and bucket: every min_authors is exact
_HASH = re.compile(r"[0-9a-f]{16}")


class AddResult(StrEnum):
    counted = "counted"
    duplicate = "duplicate"
    too_old = "too_old"


def post_hash(post_id: str) -> str:
    return hashlib.blake2b(post_id.encode(), digest_size=8).hexdigest()


def author_hash(author: str) -> str:
    """Short and fixed-length; the author is a pseudonym already (privacy.authors)."""
    return hashlib.blake2b(author.encode(), digest_size=8, person=b"lyssna-author").hexdigest()


def _cell_str(cell: CellKey) -> str:
    # The org is already in the table key.
    return _CELL_SEP.join(cell[1:])


def _cell_key(org: str, s: str) -> CellKey:
    topic, sentiment, lang = s.split(_CELL_SEP, 2)
    return (org, topic, sentiment, lang)


def _scored_cell_key(org: str, s: str) -> ScoredCellKey:
    topic, sentiment, lang, topic_level, sentiment_level = s.rsplit(_CELL_SEP, 4)
    return (org, topic, sentiment, lang, int(topic_level), int(sentiment_level))


@dataclass
class CountBuckets:
    """Per-organization time buckets over any mutable mapping: the Faust table
    in the service, a dict in unit tests.

    Writes (:meth:`add`, :meth:`expire`) must come from the stream that owns
    the organization; reads can come from anywhere.
    """

    table: MutableMapping
    bucket: timedelta
    retention: timedelta
    # Says when the table's contents were replaced wholesale (a recovery after a
    # rebalance): a new value rebuilds the index; None means "still loading",
    # and nothing is cached until loading ends.
    generation: Callable[[], object] = lambda: 0

    def __post_init__(self):
        self._bucket_s = int(self.bucket.total_seconds())
        if self._bucket_s < 1 or self.bucket != timedelta(seconds=self._bucket_s):
            raise ValueError("the count bucket must be a whole number of seconds")
        self._oldest: dict[str, int] = {}
        self._seen: dict[str, set[str]] = {}  # bucket key -> hashes of the posts counted in it
        # org -> post hash -> start of the bucket it was first counted in: the same
        # hashes as _seen, looked up by post, so a copy with a later event time in
        # another bucket is still a duplicate. Bounded like _seen (per bucket, within
        # the retention); no extra table key, so recovery rebuilds it from the seen keys.
        self._first: dict[str, dict[str, int]] = {}
        # bucket key -> author hash -> the cells (_cell_str) of that author's posts in the bucket
        self._authors: dict[str, dict[str, set[str]]] = {}
        self._cell_authors: dict[str, dict[str, int]] = {}  # bucket key -> cell -> authors remembered
        self._index_built = False
        self._index_marker: object = None

    # -------------------------------------------------------- keys

    def bucket_start(self, ts: datetime) -> int:
        seconds = int((as_utc(ts) - EPOCH).total_seconds() // 1)
        return seconds - seconds % self._bucket_s

    @staticmethod
    def key(org: str, start: int) -> str:
        return f"{org}|{start}"

    @staticmethod
    def split_key(key: str) -> tuple[str, int]:
        org, _, start = key.rpartition("|")
        return org, int(start)

    @staticmethod
    def seen_key(bucket_key: str, post_hash_: str) -> str:
        return f"{bucket_key}{_SEEN_SEP}{post_hash_}"

    @staticmethod
    def author_key(bucket_key: str, author_hash_: str) -> str:
        return f"{bucket_key}{_AUTHOR_SEP}{author_hash_}"

    @staticmethod
    def _split_sub_key(key: str, sep: str) -> tuple[str, str] | None:
        """``(bucket key, hash)`` of a seen (``#``) or author (``@``) key, else None. An
        organization's name may hold "#" or "@": only a hash after a bucket key counts."""
        bucket_key, found, h = key.rpartition(sep)
        if found and _HASH.fullmatch(h) and bucket_key.rpartition("|")[2].isdigit():
            return bucket_key, h
        return None

    # -------------------------------------------------------- index of what exists

    def _index(self) -> None:
        """(Re)learn which organizations, buckets and counted posts the table
        holds, when a recovery filled it from the changelog."""
        marker = self.generation()
        if self._index_built and marker is not None and marker == self._index_marker:
            return
        oldest: dict[str, int] = {}
        seen: dict[str, set[str]] = {}
        self._authors, self._cell_authors = {}, {}
        for key in list(self.table.keys()):
            if (author := self._split_sub_key(key, _AUTHOR_SEP)) is not None:
                self._remember_author(*author, set(self.table.get(key) or ()))
                continue
            if (counted := self._split_sub_key(key, _SEEN_SEP)) is not None:
                seen.setdefault(counted[0], set()).add(counted[1])
                continue
            org, start = self.split_key(key)
            if start < oldest.get(org, start + 1):
                oldest[org] = start
            value = self.table.get(key) or {}
            legacy = value.get("ids")  # buckets written before the seen keys
            if legacy:
                seen.setdefault(key, set()).update(legacy)
            last = value.get("last")  # the bucket's last post, whose own keys may not have made it
            if last:
                seen.setdefault(key, set()).add(last["p"])
                if "a" in last:
                    self._remember_author(key, last["a"][0], set(last["a"][1]))
        self._oldest = oldest
        self._seen = seen
        self._first = {}
        for key, hashes in seen.items():
            org, start = self.split_key(key)
            first = self._first.setdefault(org, {})
            for h in hashes:
                first[h] = min(start, first.get(h, start))
        self._index_built = marker is not None
        self._index_marker = marker

    def orgs(self) -> set[str]:
        self._index()
        return set(self._oldest)

    def earliest(self) -> datetime | None:
        self._index()
        if not self._oldest:
            return None
        return EPOCH + timedelta(seconds=min(self._oldest.values()))

    # -------------------------------------------------------- writes

    def add(self, org: str, post: ClassifiedPost, now: datetime) -> AddResult:
        self._index()
        now = as_utc(now)
        ts = min(as_utc(post.event_time), now)
        if ts < now - self.retention:
            return AddResult.too_old
        start = self.bucket_start(ts)
        key = self.key(org, start)
        h = post_hash(post.id)
        first = self._first.setdefault(org, {})
        if h in first:  # counted already, in this bucket or another one within the retention
            return AddResult.duplicate
        seen = self._seen.setdefault(key, set())
        mention = post.model_copy(update={"orgs": [org]})
        # The cells with the post's score levels (rules with min_score read them; the others
        # sum over the levels). "c" holds the plain cells of buckets written before levels.
        value = dict(self.table.get(key) or {})
        scored = dict(value.get("s", {}))
        for cell in scored_cell_keys(mention):
            s = _CELL_SEP.join(map(str, cell[1:]))
            scored[s] = scored.get(s, 0) + 1
        author = None
        if post.author:
            h_author = author_hash(post.author)
            new_cells = self._new_author_cells(key, h_author, {_cell_str(c) for c in cell_keys(mention)})
            author = (h_author, new_cells) if new_cells else None
        # The count, the post's hash and its author's new cells go in ONE changelog record.
        # The seen and author keys written after it are separate records, and a kill -9
        # can lose the tail of what the producer had not sent yet: a count recovered
        # without its seen key would count the replayed post a second time. Only the
        # last post of a bucket can be in that tail, so "last" is all the record needs.
        last: dict = {"p": h}
        if author:
            last["a"] = [author[0], sorted(author[1])]
        # A new dict every time: the table only writes its changelog on assignment.
        # Its size is bounded by the number of cells (times score levels), not by the posts counted.
        self.table[key] = {**value, "s": scored, "last": last}
        if len(seen) < MAX_IDS_PER_BUCKET:
            self.table[self.seen_key(key, h)] = 1
            seen.add(h)
            first[h] = start
        if author:
            self._remember_author(key, *author)
            # One small key per author: written when the author reaches a new cell, not per post.
            self.table[self.author_key(key, author[0])] = sorted(self._authors[key][author[0]])
        if start < self._oldest.get(org, start + 1):
            self._oldest[org] = start
        return AddResult.counted

    def _remember_author(self, bucket_key: str, h: str, cells: set[str]) -> None:
        known = self._authors.setdefault(bucket_key, {}).setdefault(h, set())
        per_cell = self._cell_authors.setdefault(bucket_key, {})
        for s in cells - known:
            per_cell[s] = per_cell.get(s, 0) + 1
        known |= cells

    def _new_author_cells(self, bucket_key: str, h: str, cells: set[str]) -> set[str]:
        """The cells of the bucket that author ``h`` reaches for the first time, among those
        that still have room (a cell at the cap already counts as many authors as any rule asks)."""
        known = self._authors.get(bucket_key, {}).get(h, set())
        per_cell = self._cell_authors.get(bucket_key, {})
        return {s for s in cells - known if per_cell.get(s, 0) < MAX_AUTHORS_PER_CELL}

    def expire(self, org: str, now: datetime) -> int:
        """Delete this organization's buckets older than the retention."""
        self._index()
        oldest = self._oldest.get(org)
        if oldest is None:
            return 0
        cutoff = self.bucket_start(as_utc(now) - self.retention)
        removed = 0
        start = oldest
        first = self._first.get(org, {})
        while start < cutoff:
            key = self.key(org, start)
            if key in self.table:
                del self.table[key]
                removed += 1
            for h in self._seen.pop(key, ()):
                self.table.pop(self.seen_key(key, h), None)
                if first.get(h) == start:
                    del first[h]
            for h in self._authors.pop(key, ()):
                self.table.pop(self.author_key(key, h), None)
            self._cell_authors.pop(key, None)
            start += self._bucket_s
        if start > oldest:
            self._oldest[org] = start
        return removed

    # -------------------------------------------------------- reads

    def cells(self, org: str, start: datetime, end: datetime,
              scored: bool = False) -> dict[CellKey, int] | dict[ScoredCellKey, int]:
        """Summed cells of ``org`` over the buckets in ``[start, end)``; ``scored``: the
        cells with score levels (:func:`rules.scored_cell_keys`), for a rule with min_score."""
        self._index()
        out: dict = {}
        for key in self._bucket_keys(org, start, end):
            value = self.table.get(key)
            if not value:
                continue
            for s, n in value.get("s", {}).items():
                cell = _scored_cell_key(org, s)
                cell = cell if scored else cell[:4]
                out[cell] = out.get(cell, 0) + n
            for s, n in ({} if scored else value.get("c", {})).items():
                cell = _cell_key(org, s)
                out[cell] = out.get(cell, 0) + n
        return out

    def distinct_authors(self, org: str, start: datetime, end: datetime, cells: Iterable[CellKey],
                         cap: int = MAX_AUTHORS_PER_CELL) -> int:
        """Distinct authors of ``org``'s posts in any of ``cells`` (:func:`rules.measured_cells`)
        over the buckets in ``[start, end)``, counted up to ``cap``: beyond what any
        ``min_authors`` asks, counting on would only cost time on every evaluation."""
        self._index()
        wanted = {_cell_str(c) for c in cells if c[0] == org}
        seen: set[str] = set()
        for key in self._bucket_keys(org, start, end):
            for h, theirs in self._authors.get(key, {}).items():
                if h not in seen and not theirs.isdisjoint(wanted):
                    seen.add(h)
                    if len(seen) >= cap:
                        return cap
        return len(seen)

    def _bucket_keys(self, org: str, start: datetime, end: datetime) -> list[str]:
        """Keys of ``org``'s buckets within ``[start, end)``."""
        b = self.bucket_start(start)
        if b < self._to_s(start):
            b += self._bucket_s  # a bucket that began before the window is not in it
        oldest = self._oldest.get(org)
        if oldest is None:
            return []
        # Nothing is stored before an org's oldest bucket.
        return [self.key(org, t) for t in range(max(b, oldest), self._to_s(end), self._bucket_s)]

    @staticmethod
    def _to_s(dt: datetime) -> int:
        return int((as_utc(dt) - EPOCH).total_seconds())


class DistinctAuthorsCollector:
    """``lyssna_alerts_distinct_authors{org, sentiment}``: distinct authors (pseudonyms)
    of each counted organization's mentions over the trailing hour, in all (``all``)
    and per sentiment, up to ``MAX_AUTHORS_PER_CELL``; computed from the counts when
    Prometheus scrapes (nothing to keep up to date between scrapes). An organization
    gets its series as soon as it is counted, zeros included."""

    WINDOW = timedelta(hours=1)

    def __init__(self, counts: CountBuckets, clock: Callable[[], datetime] = utcnow):
        self.counts, self.clock = counts, clock

    def describe(self):
        yield self._family()

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("lyssna_alerts_distinct_authors",
                                 "Distinct authors of the organization's mentions in the trailing hour "
                                 f"(exact up to {MAX_AUTHORS_PER_CELL}).", labels=["org", "sentiment"])

    def collect(self):
        g = self._family()
        now = self.clock()
        for org in sorted(self.counts.orgs()):
            for sentiment in ("all", *SENTIMENTS):
                cells = [(org, "*", s, "*") for s in (SENTIMENTS if sentiment == "all" else (sentiment,))]
                g.add_metric([org, sentiment], self.counts.distinct_authors(org, now - self.WINDOW, now, cells))
        yield g


# ---------------------------------------------------------------- the Faust app

CHANGELOG_ATTEMPTS = 5


class MentionCounter:
    """The Faust app: both agents and the counts table."""

    def __init__(self, settings: Settings, *,
                 on_counted: Callable[[str], None],
                 save_sample: Callable[[str, ClassifiedPost], Awaitable[None]],
                 on_deadletter: Callable[[], None]):
        import faust  # heavy; only the service needs it

        a = settings.alerts
        self.settings = settings
        self._on_counted = on_counted
        self._save_sample = save_sample
        self._on_deadletter = on_deadletter
        self.datadir = Path(tempfile.gettempdir()) / "lyssna-alerts" / a.app_id
        brokers = [f"kafka://{b.strip()}" for b in settings.kafka.bootstrap_servers.split(",") if b.strip()]
        partitions = self.partitions = settings.kafka.partitions
        # The changelog and the mentions topic get the replication of Lyssna's own topics.
        replicas, in_sync = resolve_replication(settings.kafka.bootstrap_servers, settings.kafka.replication_factor,
                                                settings.kafka.min_insync_replicas)
        durability = {"min.insync.replicas": str(in_sync)}
        self.app = guarded_app_class()(
            a.app_id, broker=brokers, store="memory://", web_enabled=False, autodiscover=False,
            datadir=str(self.datadir), topic_partitions=partitions,
            topic_replication_factor=replicas,
            key_serializer="raw", value_serializer="raw", producer_acks=-1,
            consumer_auto_offset_reset="earliest", table_standby_replicas=0,
            # After a crash the dead member holds its partitions until its session
            # times out; Faust's default (60 s) would stall counting that long.
            broker_session_timeout=15.0,
            Table=confirmed_table_class(),
        )
        self.table = self.app.Table("counts", default=None, partitions=partitions, extra_topic_configs=durability,
                                    schema=faust.Schema(key_type=str, value_type=None,
                                                        key_serializer="raw", value_serializer="json"))
        # The index of what the table holds is rebuilt after every recovery, not per
        # rebalance generation: Faust's flags read "recovered" for a moment in a new
        # generation before the recovery of newly assigned partitions has begun, and an
        # index built then lacked their organizations for the whole generation (their
        # earlier buckets unsummed, their posts not known as seen). ready() waits for
        # this generation's recovery, so the count alone marks a new table content.
        self._recoveries = 0
        self._recovered_generation: int | None = None
        self.table.on_recover(self._recovered)
        self.counts = CountBuckets(self.table, a.bucket, a.retention,
                                   generation=lambda: self._recoveries if self.ready() else None)
        self.source_topic = settings.kafka.topics.posts_classified
        self.mentions_topic = f"{a.app_id}-mentions"
        source = self.app.topic(self.source_topic, key_type=bytes, value_type=bytes)
        # It carries post text like posts.classified, so it is kept as long (retention section).
        mentions_ms = settings.retention.topics_ms(settings.kafka.topics)[settings.kafka.topics.posts_classified]
        self.mentions = self.app.topic(self.mentions_topic, partitions=partitions, internal=True,
                                       key_type=bytes, value_type=bytes,
                                       config=topic_configs(mentions_ms, in_sync))
        self.deadletter = self.app.topic(settings.kafka.topics.deadletter, key_type=bytes, value_type=bytes)
        self.app.agent(source, name=f"{a.app_id}.route")(self._route)
        self.app.agent(self.mentions, name=f"{a.app_id}.count")(self._count)

    async def _recovered(self) -> None:
        """Faust calls this after each recovery, once the table holds the changelog."""
        self._recoveries += 1
        self._recovered_generation = self.app.consumer_generation_id

    async def run(self) -> None:
        """Start the app and keep it running; joining the group can take as long as
        a crashed predecessor's session, so this runs beside delivery and the API."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        await self._declare_internal_topics()
        await self.app.start()
        while not self.app.crashed:
            await asyncio.sleep(1)
        raise RuntimeError(f"the counting app crashed: {self.app.crash_reason!r}")

    async def _declare_internal_topics(self) -> None:
        # Faust declares its internal topics while it subscribes, racing the group
        # join: a first join that finds them missing assigns this replica nothing and
        # stays so until the next metadata refresh, five minutes without counting.
        # Declared (with Faust's own settings) and led before the join, they are in
        # the first assignment. (Declaring starts Faust's producer, which creates them.)
        internal = (self.mentions, self.table.changelog_topic)
        for topic in internal:
            await topic.maybe_declare()
        await asyncio.to_thread(wait_for_topics, self.settings.kafka.bootstrap_servers,
                                [name for topic in internal for name in topic.topics])

    async def stop(self) -> None:
        await self.app.stop()

    def ownership(self) -> Ownership:
        """The mentions partitions Faust's assignor gave this replica: it counts and
        judges exactly their organizations (see :mod:`.ownership`)."""
        owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.mentions_topic}
        return Ownership.of(self.partitions, owned)

    def ready(self) -> bool:
        """Counts are complete enough to judge: recovery from the changelog is done."""
        app = self.app
        try:
            recovery = app.tables.recovery
        except Exception:  # not started
            return False
        # The recovery of THIS generation: after a rebalance, Faust's flags read "done"
        # until its recovery task starts (it sleeps stream_recovery_delay first), when
        # the table still lacks the newly assigned partitions; judging them then would
        # see no counts (and could resolve their firing alerts).
        return (app.started and recovery.completed.is_set() and not app.rebalancing
                and not recovery.in_recovery and self._recovered_generation == app.consumer_generation_id)

    async def _dead(self, event, reason: str) -> None:
        msg = event.message
        dl = DeadLetter.for_record(service=SERVICE, topic=msg.topic, reason=reason, value=event.value,
                                   key=event.key, partition=msg.partition, offset=msg.offset)
        await self.deadletter.send(key=event.key, value=dl.to_bytes())
        self._on_deadletter()
        log.warning("dead-lettered record", extra={"topic": msg.topic, "partition": msg.partition,
                                                   "offset": msg.offset, "reason": reason[:300]})

    async def _route(self, stream):
        async for event in stream.events():
            try:
                post = ClassifiedPost.from_bytes(event.value)
            except ValueError as e:
                await self._dead(event, f"not a valid {ClassifiedPost.__name__}: {e}")
                continue
            for org in dict.fromkeys(post.orgs):
                slim = post.model_copy(update={"orgs": [org], "text": post.text[:2000]})
                # Sent inside the agent, Faust publishes it before committing the
                # source offset, so a crash re-routes rather than loses it.
                await self.mentions.send(key=org.encode(), value=slim.to_bytes(),
                                         partition=partition_for_org(org, self.partitions))

    async def _count(self, stream):
        async for event in stream.events():
            try:
                post = ClassifiedPost.from_bytes(event.value)
                org = post.orgs[0] if post.orgs else event.key.decode()
            except (ValueError, AttributeError) as e:
                await self._dead(event, f"not a valid mention record: {e}")
                continue
            now = utcnow()
            result = self.counts.add(org, post, now)
            if result is AddResult.counted:
                try:
                    await asyncio.wait_for(self._save_sample(org, post), timeout=5)
                except Exception as e:  # samples are a courtesy; counting goes on without them
                    log.warning("could not store a sample post", extra={"org": org, "error": str(e)})
            self.counts.expire(org, now)
            # Not on to the next mention (whose turn acknowledges this one) before Kafka
            # has every changelog record this one wrote.
            await self._changelog_confirmed()
            self._on_counted(org)

    async def _changelog_confirmed(self) -> None:
        """Wait until Kafka acknowledged this mention's changelog writes; a write it
        refused is written again (the key's current value); after the last try the
        app crashes, so the process restarts from the last committed offset."""
        table = self.table
        for attempt in range(CHANGELOG_ATTEMPTS):
            sent, table.unconfirmed = table.unconfirmed, []
            if not sent:
                return
            outcomes = await asyncio.gather(*(fut for fut, _ in sent), return_exceptions=True)
            failed = {key: fut.message.partition
                      for (fut, key), outcome in zip(sent, outcomes) if isinstance(outcome, BaseException)}
            if not failed:
                return
            log.warning("Kafka refused count changelog records; writing them again",
                        extra={"records": len(failed), "attempt": attempt + 1})
            await asyncio.sleep(0.5 * 2 ** attempt)
            for key, partition in failed.items():
                # The key's current value (a deletion: its tombstone), to the same partition.
                if key in table:
                    table.send_changelog(partition, key, table[key])
                else:
                    table.send_changelog(partition, key, None, value_serializer="raw")
        error = RuntimeError("Kafka refused the counts changelog after every try")
        await self.app.crash(error)
        raise error
