"""Webhook delivery: from the retry queue in Redis to each receiver, with retries that survive restarts.

:class:`DeliveryWorker` takes due deliveries from the Redis queue under a lease
(what queues them: :mod:`.outbox_reader`) and runs each attempt as a chain of
small named stages, as Alertmanager's notify pipeline does:

- **load**: the delivery record, its event and its webhook
  (:meth:`DeliveryWorker.load`); a record that is no longer open leaves the queue.
- **gate** (:func:`gate`, pure): reasons not to send at all: the event is gone,
  a silence matches, the webhook is unknown or disabled. The same gate decides
  a new record's first status in the outbox reader.
- **send** (:meth:`DeliveryWorker.send`): record the attempt as in flight,
  render (:mod:`.payloads`), sign (:mod:`.signing`), post; gives a :class:`Sent`.
- **settle** (:func:`settle`, pure, then :meth:`DeliveryWorker.apply`): what
  the answer means (:mod:`.retry`): delivered, retry later (honouring
  ``Retry-After``), disable the endpoint (410), or give up to the dead letter.

Gate and settle both give a :class:`Verdict`, which one step writes to Redis,
the metrics and the dead letter. A worker killed mid-request leaves the
delivery in the queue, due again when the lease ends, so a restarted worker
sends it again with the same ``webhook-id`` (the event id).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Collection, Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from lyssna.common.config import Settings, WebhookConfig
from lyssna.common.contracts import AlertEvent, DeadLetter, as_utc, utcnow
from lyssna.common.urlsafety import AddressPolicy, check_webhook_url, pinned_request, why_not_public

from . import payloads
from .metrics import SERVICE, AlertsMetrics
from .outbox import AlertEventPublisher
from .retry import Outcome, RetrySchedule, classify_exception, classify_response, retry_after_header
from .signing import webhook_headers
from .silences import Silence, silenced_by
from .store import OPEN_STATUSES, AlertsStore, Attempt, DeliveryRecord, DeliveryStatus

log = logging.getLogger("lyssna.alerts.delivery")

USER_AGENT = "Lyssna-Webhooks/1"
ERROR_CHARS = 500


def mask_url(url: str) -> str:
    """A webhook URL safe to show: scheme, host and port only. Paths and queries
    of webhook URLs often are the credential (Slack, Teams)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    hidden = "/***" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def scrub(text: str, webhook: WebhookConfig | None) -> str:
    """An error message with the webhook's URL (and its path) masked, trimmed."""
    if webhook is not None:
        parts = urlsplit(webhook.url)
        for secret in (webhook.url, parts.path if parts.path not in ("", "/") else None, parts.query or None):
            if secret:
                text = text.replace(secret, "/***" if secret != webhook.url else mask_url(webhook.url))
    return text[:ERROR_CHARS]


def effective_timeout(settings: Settings, webhook: WebhookConfig) -> float:
    if "timeout" in webhook.model_fields_set:
        return webhook.timeout.total_seconds()
    return settings.alerts.delivery_timeout.total_seconds()


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


# ---------------------------------------------------------------- verdicts (pure)

# The outcome label of lyssna_alerts_deliveries_total for each status a verdict gives.
OUTCOME_LABEL = {
    DeliveryStatus.delivered: "delivered", DeliveryStatus.retrying: "retry", DeliveryStatus.failed: "failed",
    DeliveryStatus.dead: "failed", DeliveryStatus.disabled: "disabled", DeliveryStatus.silenced: "silenced",
}


@dataclass(frozen=True)
class Verdict:
    """What becomes of a delivery: made by the gate (nothing sent) or by settle (after an attempt)."""

    status: DeliveryStatus
    reason: str | None = None
    silence_id: str | None = None
    retry_at: datetime | None = None       # when status is retrying
    disable_webhook: bool = False          # the receiver said 410 Gone

    @property
    def dead_letter(self) -> bool:
        return self.status in (DeliveryStatus.failed, DeliveryStatus.dead)

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABEL[self.status]


def gate(event: AlertEvent | None, webhook: str, configured: Collection[str],
         disabled: Mapping[str, Mapping[str, object]], silences: Iterable[Silence],
         now: datetime) -> Verdict | None:
    """Why a delivery of ``event`` to ``webhook`` is not to be sent (None: send it).

    Checked when the record is made and again before every attempt, since a
    silence or a disabled endpoint may come meanwhile. A silence comes first,
    as in Alertmanager: what an operator muted is recorded as silenced whatever
    state the endpoint is in.
    """
    if event is None:
        return Verdict(DeliveryStatus.failed, "the alert event is no longer stored")
    silence = silenced_by(event, silences, now)
    if silence is not None:
        return Verdict(DeliveryStatus.silenced, f"silenced by {silence.id}", silence_id=silence.id)
    if webhook not in configured:
        return Verdict(DeliveryStatus.failed, f"no webhook named {webhook!r} in the configuration")
    if webhook in disabled:
        return Verdict(DeliveryStatus.disabled,
                       f"webhook {webhook!r} is disabled: {disabled[webhook].get('reason', '')}")
    return None


@dataclass(frozen=True)
class Sent:
    """What one POST came to: the receiver's answer, or the error on the way."""

    outcome: Outcome
    finished_at: datetime
    status_code: int | None = None
    retry_after: str | None = None   # the receiver's Retry-After, where HTTP makes it a back-off request
    error: str | None = None

    @classmethod
    def answer(cls, status_code: int, headers: Mapping[str, str], finished_at: datetime) -> "Sent":
        return cls(classify_response(status_code, headers), finished_at, status_code,
                   retry_after_header(status_code, headers))


def settle(sent: Sent, *, number: int, made: int, schedule: RetrySchedule) -> Verdict:
    """What the answer to attempt ``number`` makes of the delivery; ``made`` counts
    the attempts of the current schedule (a redelivery starts a new one), this one included."""
    if sent.outcome is Outcome.delivered:
        return Verdict(DeliveryStatus.delivered)
    if sent.outcome is Outcome.disabled:
        return Verdict(DeliveryStatus.disabled, f"receiver answered {sent.status_code} Gone on attempt {number}",
                       disable_webhook=True)
    if sent.outcome is Outcome.retry and not schedule.is_exhausted(made):
        wait = schedule.next_delay(made, retry_after=sent.retry_after, now=sent.finished_at)
        return Verdict(DeliveryStatus.retrying, retry_at=sent.finished_at + wait)
    last = f"HTTP {sent.status_code}" if sent.status_code else (sent.error or "no answer")
    if sent.outcome is Outcome.retry:
        return Verdict(DeliveryStatus.dead, f"gave up after {made} attempts (last: {last})")
    return Verdict(DeliveryStatus.failed, f"refused (last: {last})")


async def dead_letter_delivery(publisher: AlertEventPublisher, store: AlertsStore, metrics: AlertsMetrics,
                               record: DeliveryRecord, event: AlertEvent | None, reason: str) -> None:
    dl = DeadLetter(service=SERVICE, topic=publisher.events_topic, key=record.id,
                    reason=f"webhook {record.webhook}: {reason}"[:2000],
                    payload=event.model_dump_json() if event else record.model_dump_json())
    try:
        await publisher.dead_letter(dl)
    except Exception:
        # The record stays in Redis as failed/dead with deadlettered=false, so
        # the loss is visible in the API even when Kafka is away.
        log.exception("could not write the dead letter", extra={"delivery_id": record.id})
        return
    record.deadlettered = True
    await store.save_delivery(record)
    metrics.deadletters.labels(SERVICE).inc()


# ---------------------------------------------------------------- the worker

@dataclass(frozen=True)
class Loaded:
    """A delivery that is still open, with what it needs (None where gone)."""

    record: DeliveryRecord
    event: AlertEvent | None
    webhook: WebhookConfig | None


# How each verdict after an attempt is logged.
_LOGGED = {
    DeliveryStatus.delivered: (logging.INFO, "delivered"),
    DeliveryStatus.retrying: (logging.INFO, "delivery will be retried"),
    DeliveryStatus.disabled: (logging.WARNING, "webhook disabled by its receiver"),
    DeliveryStatus.failed: (logging.WARNING, "delivery failed"),
    DeliveryStatus.dead: (logging.WARNING, "delivery failed"),
}


class DeliveryWorker:
    """Redis retry queue -> HTTP POST to the receivers."""

    def __init__(self, settings: Settings, store: AlertsStore, publisher: AlertEventPublisher,
                 metrics: AlertsMetrics, schedule: RetrySchedule, secrets: Mapping[str, list[str]], *,
                 resolver: Callable = socket.getaddrinfo, address_policy: AddressPolicy = why_not_public,
                 poll_interval: float = 0.25):
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.schedule = schedule
        self.secrets = secrets
        self.resolver = resolver
        self.address_policy = address_policy
        self.poll_interval = poll_interval
        self.hooks = {w.name: w for w in settings.webhooks}
        longest = max([effective_timeout(settings, w) for w in settings.webhooks] or [0])
        # A lease shorter than a request could hand a delivery to a second
        # attempt while the first is still waiting for its answer.
        self.lease = max(settings.alerts.delivery_lease, timedelta(seconds=longest + 5))
        self.slots = asyncio.Semaphore(settings.alerts.delivery_concurrency)
        self.in_flight: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                        headers={"user-agent": USER_AGENT})

    async def _post(self, webhook: WebhookConfig, addresses: list[str], body: bytes,
                    headers: dict[str, str]) -> httpx.Response:
        """POST to the addresses the safety check approved, in order, never resolving the
        name again; with none (private network allowed) httpx resolves it."""
        timeout = effective_timeout(self.settings, webhook)
        if not addresses:
            return await self.client.post(webhook.url, content=body, headers=headers, timeout=timeout)

        async def post(address: str) -> httpx.Response:
            url, host, extensions = pinned_request(webhook.url, address)
            return await self.client.post(url, content=body, headers={**headers, **host},
                                          extensions=extensions, timeout=timeout)

        for address in addresses[:-1]:
            try:
                return await post(address)
            except httpx.ConnectError:
                continue  # e.g. an IPv6 address without a route; the next one may answer
        return await post(addresses[-1])

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    async def run(self) -> None:
        backoff = self.poll_interval
        while True:
            try:
                free = self.settings.alerts.delivery_concurrency - len(self.in_flight)
                ids = await self.store.claim_due(utcnow(), self.lease, free)
                for did in ids:
                    if did in self.in_flight:
                        continue
                    self.in_flight.add(did)
                    task = asyncio.create_task(self._attempt_guarded(did))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                self.metrics.retry_queue_depth.set(await self.store.queue_depth())
                backoff = self.poll_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not read the retry queue")
                backoff = min(max(backoff * 2, 1.0), 10.0)  # Redis away: do not spin
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _attempt_guarded(self, did: str) -> None:
        try:
            async with self.slots:
                await self.attempt(did)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The delivery stays queued at the end of its lease and is tried again.
            log.exception("delivery attempt crashed", extra={"delivery_id": did})
        finally:
            self.in_flight.discard(did)

    async def attempt(self, did: str) -> None:
        """One attempt: load -> gate -> send -> settle (see the module docstring)."""
        loaded = await self.load(did)
        if loaded is None:
            return
        verdict = gate(loaded.event, loaded.record.webhook, self.hooks, await self.store.disabled_webhooks(),
                       await self.store.silences(), utcnow())
        if verdict is not None:
            await self.apply(loaded, verdict)
            return
        sent = await self.send(loaded.record, loaded.event, loaded.webhook)
        record = loaded.record
        verdict = settle(sent, number=len(record.attempts), made=record.attempts_in_schedule,
                         schedule=self.schedule)
        await self.apply(loaded, verdict, sent)

    async def load(self, did: str) -> Loaded | None:
        record = await self.store.get_delivery(did)
        if record is None or record.status not in OPEN_STATUSES:
            await self.store.unschedule(did)
            return None
        return Loaded(record, await self.store.get_event(record.event_id), self.hooks.get(record.webhook))

    async def send(self, record: DeliveryRecord, event: AlertEvent, webhook: WebhookConfig) -> Sent:
        """Render, sign and post. The attempt is saved as in flight first: a worker
        that dies before the answer leaves it so, and the next attempt marks it interrupted."""
        now = utcnow()
        for a in record.attempts:
            if a.outcome == "in_flight":
                a.outcome, a.finished_at = "interrupted", a.finished_at or now
        record.attempts.append(Attempt(number=len(record.attempts) + 1, started_at=now))
        await self.store.save_delivery(record)
        try:
            addresses = await asyncio.to_thread(check_webhook_url, webhook.url, webhook.allow_private_network,
                                                resolver=self.resolver, address_policy=self.address_policy)
            body, content_type = payloads.render(webhook.format, event, base_url=self.settings.alerts.public_url,
                                                 receiver=webhook.name, samples=webhook.samples,
                                                 mask_samples=webhook.mask_samples)
            signed = webhook_headers(event.event_id, int(time.time()), body, self.secrets.get(webhook.name))
            resp = await self._post(webhook, addresses, body, {**signed, "content-type": content_type})
            return Sent.answer(resp.status_code, resp.headers, utcnow())
        except Exception as e:
            error = scrub(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, webhook)
            return Sent(classify_exception(e), utcnow(), error=error)

    async def apply(self, loaded: Loaded, verdict: Verdict, sent: Sent | None = None) -> None:
        """Write ``verdict`` (and the attempt's answer, when one was sent) to Redis,
        the metrics, the retry queue and the dead letter."""
        record, event = loaded.record, loaded.event
        if sent is not None:
            attempt = record.attempts[-1]
            attempt.finished_at, attempt.status_code, attempt.error = sent.finished_at, sent.status_code, sent.error
            attempt.outcome = sent.outcome.value
            if verdict.retry_at is not None:
                attempt.retry_after, attempt.next_attempt_at = sent.retry_after, verdict.retry_at
        if verdict.silence_id is not None:
            record.silence_id = verdict.silence_id
        if verdict.disable_webhook:
            await self.store.disable_webhook(record.webhook, verdict.reason or "")
        if verdict.status is DeliveryStatus.delivered and sent is not None:
            self.metrics.delivery_latency.labels(record.webhook).observe(
                max(0.0, (sent.finished_at - as_utc(event.occurred_at)).total_seconds()))
        if verdict.retry_at is not None:
            record.status, record.next_attempt_at = verdict.status, verdict.retry_at
            await self.store.save_delivery(record)
            await self.store.schedule(record.id, verdict.retry_at)
        else:
            record.status, record.reason, record.next_attempt_at = verdict.status, verdict.reason, None
            await self.store.save_delivery(record)
            await self.store.unschedule(record.id)
        self.metrics.deliveries.labels(record.webhook, verdict.outcome_label).inc()
        if verdict.dead_letter:
            await dead_letter_delivery(self.publisher, self.store, self.metrics, record, event,
                                       verdict.reason or verdict.status.value)
        if sent is not None:
            level, message = _LOGGED[verdict.status]
            log.log(level, message, extra={
                "delivery_id": record.id, "webhook": record.webhook, "event_id": record.event_id,
                "attempt": len(record.attempts), "status_code": sent.status_code, "outcome": sent.outcome.value,
                "error": sent.error, "next_attempt_at": _iso(verdict.retry_at)})


async def redeliver(store: AlertsStore, record: DeliveryRecord, disabled: Mapping[str, object]) -> DeliveryRecord:
    """Queue a finished delivery again with a fresh retry schedule (same webhook-id)."""
    if record.status in OPEN_STATUSES:
        raise ValueError(f"delivery {record.id} is still {record.status.value}; "
                         f"next attempt at {_iso(record.next_attempt_at)}")
    if record.webhook in disabled:
        raise ValueError(f"webhook {record.webhook!r} is disabled; enable it first")
    now = utcnow()
    record.status, record.reason, record.next_attempt_at = DeliveryStatus.pending, None, now
    record.schedule_start = len(record.attempts)
    record.redeliveries += 1
    record.silence_id = None
    record.deadlettered = False
    await store.save_delivery(record)
    await store.schedule(record.id, now)
    return record
