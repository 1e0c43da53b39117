"""The one path every post takes, from the push API and from the connectors:
normalize -> reserve ids in Redis -> produce to Kafka and wait for acks ->
confirm (or release) the ids -> count.

Nothing is reported ``accepted`` before Kafka acknowledged it. When Kafka or
Redis cannot be reached, ``Unavailable`` is raised and nothing of the batch is
reported accepted (with the rare exception of a batch that Kafka took only in
part: those results travel with the exception).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

from redis.exceptions import RedisError

from lyssna.common.contracts import MAX_TEXT_CHARS, DeadLetter
from lyssna.common.pseudonyms import Pseudonymizer

from .dedup import Claim, Dedup
from .metrics import IngestMetrics
from .normalize import Normalized, Rejection, TimeBounds, bounded_time, normalize, pseudonymous
from .producer import KafkaUnavailable, PostProducer

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"


@dataclass(slots=True)
class ItemResult:
    index: int
    id: str | None
    status: str
    reason: str | None = None
    ignored_fields: tuple[str, ...] = ()
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "id": self.id, "status": self.status}
        if self.reason is not None:
            d["reason"] = self.reason
        if self.ignored_fields:
            d["ignored_fields"] = list(self.ignored_fields)
        if self.retryable:
            d["retryable"] = True
        return d


class Unavailable(Exception):
    """A dependency is down; ``results`` says what became of each item (none accepted,
    unless Kafka took part of the batch before failing)."""

    def __init__(self, dependency: str, detail: str, results: list[ItemResult]):
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency
        self.detail = detail
        self.results = results


_IN_FLIGHT = ("another request is ingesting this id right now; retry in a few seconds "
              "(it will then be accepted or reported as a duplicate)")


_CLIENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def id_namespace(channel: str, client: str | None = None) -> str:
    """The namespace of the ids a push client sends: the channel, and the client
    (an API key's *name*, never the key) when the caller knows it."""
    if client is None:
        return channel
    if not _CLIENT.fullmatch(client):
        raise ValueError("client: use 1-64 characters A-Z, a-z, 0-9, '_', '.' or '-'")
    return f"{channel}@{client}"


class Pipeline:
    def __init__(self, *, dedup: Dedup, producer: PostProducer, metrics: IngestMetrics,
                 topic: str, deadletter_topic: str | None = None,
                 max_text_chars: int = MAX_TEXT_CHARS, time_bounds: TimeBounds = TimeBounds(),
                 authors: Pseudonymizer | None = None):
        self.dedup = dedup
        self.producer = producer
        self.metrics = metrics
        self.topic = topic
        self.deadletter_topic = deadletter_topic
        self.max_text_chars = max_text_chars
        self.time_bounds = time_bounds
        # privacy.authors: pseudonymous. Every post passes here (push API and
        # connectors), so no handle reaches the topic, dedup or a dead letter.
        self.authors = authors

    def _prepared(self, item: Normalized | Rejection, channel: str) -> Normalized | Rejection:
        if isinstance(item, Rejection):
            return item
        item = pseudonymous(item, self.authors)
        if isinstance(item, Rejection):
            return item
        item, why = bounded_time(item, self.time_bounds)
        if why is not None:
            self.metrics.created_at_replaced.labels(channel, why).inc()
        return item

    async def ingest_pushed(self, raw: Sequence[Any], *, channel: str, client: str | None = None) -> list[ItemResult]:
        """Ingest a push client's items (parsed JSON values, one per post).

        Their ids are scoped to ``channel`` (and ``client``, when given) and their
        source, see ``normalize.client_id_prefix``, so no client can claim
        another source's ids.
        """
        namespace = id_namespace(channel, client)
        return await self.ingest([normalize(item, default_source=channel, max_text_chars=self.max_text_chars,
                                            id_namespace=namespace, authors=self.authors) for item in raw],
                                 channel=channel)

    async def ingest(self, items: Sequence[Normalized | Rejection], *, channel: str) -> list[ItemResult]:
        """Ingest prepared items (a connector's batch, or normalized pushed items)
        that arrived through ``channel``; a Rejection is answered as rejected.
        Every post's ``created_at`` is held to ``time_bounds``, and its author made a
        pseudonym when ``authors`` is set."""
        self.metrics.received.labels(channel).inc(len(items))
        prepared = [self._prepared(item, channel) for item in items]
        results: list[ItemResult] = []
        candidates: list[tuple[int, Normalized]] = []
        for i, p in enumerate(prepared):
            if isinstance(p, Rejection):
                results.append(ItemResult(i, None, REJECTED, p.reason))
            else:
                results.append(ItemResult(i, p.post.id, ACCEPTED, ignored_fields=p.ignored_fields))
                candidates.append((i, p))
        try:
            if candidates:
                await self._deliver(candidates, results)
        finally:
            # Also when a dependency is down (Unavailable): every received item
            # ends in one outcome, so received == the sum of the outcomes.
            self.metrics.count(channel, _tally(results))
        return results

    async def _deliver(self, candidates: list[tuple[int, Normalized]], results: list[ItemResult]) -> None:
        ids = [n.post.id for _, n in candidates]
        try:
            token, claims = await self.dedup.reserve(ids)
        except RedisError as e:
            raise self._unavailable("redis", f"{type(e).__name__}: {e}", results, candidates) from e
        to_send: list[tuple[int, Normalized]] = []
        for (i, n), claim in zip(candidates, claims):
            if claim is Claim.reserved:
                to_send.append((i, n))
            elif claim is Claim.duplicate:
                results[i].status = DUPLICATE
            else:
                results[i].status, results[i].reason, results[i].retryable = REJECTED, _IN_FLIGHT, True
        if not to_send:
            return
        send_ids = [n.post.id for _, n in to_send]
        try:
            errors = await self.producer.send_batch(
                self.topic, [(n.post.id.encode(), n.value) for _, n in to_send])
        except KafkaUnavailable as e:
            await self._release_quietly(token, send_ids)
            raise self._unavailable("kafka", str(e), results, to_send) from e
        acked = [pid for pid, err in zip(send_ids, errors) if err is None]
        failed = [(i, pid, err) for (i, _), pid, err in zip(to_send, send_ids, errors) if err is not None]
        try:
            await self.dedup.confirm(acked)
        except RedisError as e:
            # The posts are on the topic; only the dedup memory is missing, so a
            # resend within the reservation TTL is still caught, later ones repeat.
            log.warning("could not confirm produced ids in redis", extra={"error": str(e), "count": len(acked)})
        if failed:
            await self._release_quietly(token, [pid for _, pid, _ in failed])
            first = failed[0][2]
            for i, _, err in failed:
                results[i].status = REJECTED
                results[i].reason = f"Kafka did not acknowledge the post ({type(err).__name__}); retry"
                results[i].retryable = True
            log.warning("kafka did not acknowledge part of a batch",
                        extra={"failed": len(failed), "acked": len(acked), "error": str(first)})
            raise Unavailable("kafka", f"{len(failed)} of {len(to_send)} posts not acknowledged: {first}",
                              results)

    async def _release_quietly(self, token: str, ids: list[str]) -> None:
        try:
            await self.dedup.release(token, ids)
        except RedisError as e:
            # The reservations expire on their own after the short TTL.
            log.warning("could not release reservations", extra={"error": str(e), "count": len(ids)})

    @staticmethod
    def _unavailable(dependency: str, detail: str, results: list[ItemResult],
                     candidates: list[tuple[int, Normalized]]) -> Unavailable:
        for i, _ in candidates:
            results[i].status = REJECTED
            results[i].reason = f"{dependency} is unavailable; nothing was accepted, retry later"
            results[i].retryable = True
        return Unavailable(dependency, detail, results)

    async def dead_letter(self, origin: str, rejections: Sequence[Rejection]) -> None:
        """Send rejected connector items to the dead-letter topic (and wait for the acks),
        so a bad record from a source is never dropped silently."""
        if not rejections or not self.deadletter_topic:
            return
        records = []
        for r in rejections:
            # A source's raw record may name people anywhere in it (accounts, mentions,
            # boosts), so with pseudonymous authors only the reason is kept.
            payload = None if self.authors is not None else (r.payload or "").encode("utf-8", "replace")
            dl = DeadLetter.for_record(service="ingest", topic=origin, reason=r.reason, value=payload)
            records.append((origin.encode(), dl.to_bytes()))
        errors = await self.producer.send_batch(self.deadletter_topic, records)
        failed = [e for e in errors if e is not None]
        if failed:
            raise KafkaUnavailable(f"dead letters not acknowledged: {failed[0]}")
        self.metrics.deadletters.labels("ingest").inc(len(records))


def _tally(results: list[ItemResult]) -> dict[str, int]:
    counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0}
    for r in results:
        counts[r.status] += 1
    return counts
