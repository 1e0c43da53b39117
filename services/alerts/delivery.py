"""Webhook delivery: from the outbox topic to each receiver, with retries that survive restarts.

Two loops:

- :class:`OutboxReader` reads ``alerts.events`` in a consumer group and, for
  every event and every webhook the event names, creates a delivery record in
  Redis (id ``<event_id>:<webhook>``) and queues it. The Kafka offset is
  committed only after Redis has the records, so a crash re-reads rather than
  loses; a re-read finds the records and changes nothing.
- :class:`DeliveryWorker` takes due deliveries from the Redis queue under a
  lease, renders and signs the payload, posts it and decides from the answer
  (:mod:`.retry`): delivered, retry later, disable the endpoint (410) or give
  up to the dead letter. A worker killed mid-request leaves the delivery in
  the queue, due again when the lease ends, so a restarted worker sends it
  again with the same ``webhook-id`` (the event id).

Silences are checked when the record is made and before each attempt:
silenced deliveries are recorded with outcome ``silenced`` and not sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import datetime, timedelta
from typing import Callable, Mapping
from urllib.parse import urlsplit

import httpx
from aiokafka import AIOKafkaConsumer

from lyssna.common.config import Settings, WebhookConfig
from lyssna.common.contracts import AlertEvent, DeadLetter, as_utc, utcnow
from lyssna.common.urlsafety import AddressPolicy, check_webhook_url, pinned_request, why_not_public

from . import payloads
from .metrics import SERVICE, AlertsMetrics
from .outbox import AlertEventPublisher
from .retry import Outcome, RetrySchedule, classify_exception, classify_response, retry_after_header
from .signing import webhook_headers
from .silences import silenced_by
from .store import OPEN_STATUSES, AlertsStore, Attempt, DeliveryRecord, DeliveryStatus, delivery_id

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


class OutboxReader:
    """alerts.events -> delivery records and the retry queue in Redis."""

    def __init__(self, settings: Settings, store: AlertsStore, publisher: AlertEventPublisher, metrics: AlertsMetrics,
                 schedule: RetrySchedule, *, on_queued: Callable[[], None] = lambda: None):
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.schedule = schedule
        self.on_queued = on_queued
        self.topic = settings.kafka.topics.alerts_events
        self.group_id = f"{settings.alerts.app_id}-delivery"
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.settings.kafka.bootstrap_servers, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=f"{self.settings.alerts.app_id}-delivery")
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            batch = await self.consumer.getmany(timeout_ms=1000, max_records=200)
            if not batch:
                continue
            try:
                for msgs in batch.values():
                    for msg in msgs:
                        await self.accept(msg)
                await self.consumer.commit()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis (or the dead-letter topic) is away: read the batch again
                # later; what was already stored is found and left as it is.
                log.exception("could not store deliveries; retrying the batch")
                for tp, msgs in batch.items():
                    self.consumer.seek(tp, msgs[0].offset)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def accept(self, msg) -> None:
        try:
            event = AlertEvent.from_bytes(msg.value)
        except ValueError as e:
            await self.publisher.dead_letter(DeadLetter.for_record(
                service=SERVICE, topic=msg.topic, reason=f"not a valid AlertEvent: {e}", value=msg.value,
                key=msg.key, partition=msg.partition, offset=msg.offset))
            self.metrics.deadletters.labels(SERVICE).inc()
            return
        await self.store.record_event(event)
        await self.create_deliveries(event)

    async def create_deliveries(self, event: AlertEvent) -> None:
        now = utcnow()
        silences = await self.store.silences()
        disabled = await self.store.disabled_webhooks()
        hooks = {w.name: w for w in self.settings.webhooks}
        queued = False
        for name in dict.fromkeys(event.notify):
            did = delivery_id(event.event_id, name)
            if await self.store.get_delivery(did) is not None:
                continue
            record = DeliveryRecord(id=did, event_id=event.event_id, alert_id=event.alert_id, rule=event.rule,
                                    org=event.org, state=event.state, webhook=name,
                                    status=DeliveryStatus.pending, created_at=now, updated_at=now)
            due = None
            silence = silenced_by(event, silences, now)
            if silence is not None:
                record.status, record.silence_id = DeliveryStatus.silenced, silence.id
                record.reason = f"silenced by {silence.id}"
            elif name not in hooks:
                record.status = DeliveryStatus.failed
                record.reason = f"no webhook named {name!r} in the configuration"
            elif name in disabled:
                record.status = DeliveryStatus.disabled
                record.reason = f"webhook {name!r} is disabled: {disabled[name].get('reason', '')}"
            else:
                due = now + self.schedule.next_delay(0)
                record.next_attempt_at = due
            created = await self.store.create_delivery(record, due)
            if not created:
                continue
            if record.status is DeliveryStatus.silenced:
                self.metrics.deliveries.labels(name, "silenced").inc()
            elif record.status is DeliveryStatus.disabled:
                self.metrics.deliveries.labels(name, "disabled").inc()
            elif record.status is DeliveryStatus.failed:
                self.metrics.deliveries.labels(name, "failed").inc()
                await _dead_letter(self.publisher, self.store, self.metrics, record, event, record.reason)
            else:
                queued = True
            log.info("delivery %s", record.status.value, extra={
                "delivery_id": did, "webhook": name, "alert_id": event.alert_id, "event_id": event.event_id})
        if queued:
            self.on_queued()


async def _dead_letter(publisher: AlertEventPublisher, store: AlertsStore, metrics: AlertsMetrics, record: DeliveryRecord,
                       event: AlertEvent | None, reason: str) -> None:
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


class DeliveryWorker:
    """Redis retry queue -> HTTP POST to the receivers."""

    def __init__(self, settings: Settings, store: AlertsStore, publisher: AlertEventPublisher, metrics: AlertsMetrics,
                 schedule: RetrySchedule, secrets: Mapping[str, list[str]], *,
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
        record = await self.store.get_delivery(did)
        if record is None or record.status not in OPEN_STATUSES:
            await self.store.unschedule(did)
            return
        event = await self.store.get_event(record.event_id)
        webhook = self.hooks.get(record.webhook)
        now = utcnow()
        if event is None or webhook is None:
            why = ("the alert event is no longer stored" if event is None
                   else f"no webhook named {record.webhook!r} in the configuration")
            await self._finish(record, DeliveryStatus.failed, why, event, metric="failed")
            return
        disabled = (await self.store.disabled_webhooks()).get(webhook.name)
        if disabled is not None:
            await self._finish(record, DeliveryStatus.disabled,
                               f"webhook {webhook.name!r} is disabled: {disabled.get('reason', '')}", event,
                               metric="disabled")
            return
        silence = silenced_by(event, await self.store.silences(), now)
        if silence is not None:
            record.silence_id = silence.id
            await self._finish(record, DeliveryStatus.silenced, f"silenced by {silence.id}", event,
                               metric="silenced")
            return

        for a in record.attempts:
            if a.outcome == "in_flight":
                # The worker that made it died before hearing the answer.
                a.outcome, a.finished_at = "interrupted", a.finished_at or now
        attempt = Attempt(number=len(record.attempts) + 1, started_at=now)
        record.attempts.append(attempt)
        await self.store.save_delivery(record)

        status_code, headers, error = None, None, None
        try:
            addresses = await asyncio.to_thread(check_webhook_url, webhook.url, webhook.allow_private_network,
                                                resolver=self.resolver, address_policy=self.address_policy)
            body, content_type = payloads.render(webhook.format, event, base_url=self.settings.alerts.public_url,
                                                 receiver=webhook.name)
            signed = webhook_headers(event.event_id, int(time.time()), body, self.secrets.get(webhook.name))
            resp = await self._post(webhook, addresses, body, {**signed, "content-type": content_type})
            status_code, headers = resp.status_code, resp.headers
            outcome = classify_response(status_code, headers)
        except Exception as e:
            outcome = classify_exception(e)
            error = scrub(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, webhook)
        done = utcnow()
        attempt.finished_at, attempt.status_code, attempt.error = done, status_code, error
        attempt.outcome = outcome.value
        extra = {"delivery_id": did, "webhook": webhook.name, "event_id": event.event_id,
                 "attempt": attempt.number, "status_code": status_code, "outcome": outcome.value}

        if outcome is Outcome.delivered:
            self.metrics.delivery_latency.labels(webhook.name).observe(
                max(0.0, (done - as_utc(event.occurred_at)).total_seconds()))
            await self._finish(record, DeliveryStatus.delivered, None, event, metric="delivered")
            log.info("delivered", extra=extra)
        elif outcome is Outcome.disabled:
            reason = f"receiver answered {status_code} Gone on attempt {attempt.number}"
            await self.store.disable_webhook(webhook.name, reason)
            await self._finish(record, DeliveryStatus.disabled, reason, event, metric="disabled")
            log.warning("webhook disabled by its receiver", extra=extra)
        elif outcome is Outcome.retry and not self.schedule.is_exhausted(record.attempts_in_schedule):
            asked = retry_after_header(status_code, headers) if status_code else None
            delay = self.schedule.next_delay(record.attempts_in_schedule, retry_after=asked, now=done)
            due = done + delay
            attempt.retry_after, attempt.next_attempt_at = asked, due
            record.status, record.next_attempt_at = DeliveryStatus.retrying, due
            await self.store.save_delivery(record)
            await self.store.schedule(did, due)
            self.metrics.deliveries.labels(webhook.name, "retry").inc()
            log.info("delivery will be retried", extra={**extra, "next_attempt_at": due.isoformat(),
                                                        "error": error})
        else:
            if outcome is Outcome.retry:
                status = DeliveryStatus.dead
                reason = f"gave up after {record.attempts_in_schedule} attempts"
            else:
                status = DeliveryStatus.failed
                reason = "refused"
            last = f"HTTP {status_code}" if status_code else (error or "no answer")
            await self._finish(record, status, f"{reason} (last: {last})", event, metric="failed",
                               dead_letter=True)
            log.warning("delivery failed", extra={**extra, "error": error})

    async def _finish(self, record: DeliveryRecord, status: DeliveryStatus, reason: str | None,
                      event: AlertEvent | None, *, metric: str, dead_letter: bool = False) -> None:
        record.status, record.reason, record.next_attempt_at = status, reason, None
        await self.store.save_delivery(record)
        await self.store.unschedule(record.id)
        self.metrics.deliveries.labels(record.webhook, metric).inc()
        if dead_letter or status is DeliveryStatus.failed:
            await _dead_letter(self.publisher, self.store, self.metrics, record, event, reason or status.value)


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
