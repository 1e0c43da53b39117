"""The outbox topic to the retry queue: one delivery record per event and webhook.

:class:`OutboxReader` reads ``alerts.events`` in a consumer group and, for
every event and every webhook the event names, creates a delivery record in
Redis (id ``<event_id>:<webhook>``) and queues it for :mod:`.delivery`. The
Kafka offset is committed only after Redis has the records, so a crash
re-reads rather than loses; a re-read finds the records and changes nothing.

A new record passes the same gate as every attempt (:func:`.delivery.gate`):
a silenced event, an unknown or a disabled webhook gets its final status at
once and is never queued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaConsumer

from lyssna.common.config import Settings
from lyssna.common.contracts import AlertEvent, DeadLetter, utcnow

from .delivery import dead_letter_delivery, gate
from .metrics import SERVICE, AlertsMetrics
from .outbox import AlertEventPublisher
from .retry import RetrySchedule
from .store import AlertsStore, DeliveryRecord, DeliveryStatus, delivery_id

log = logging.getLogger("lyssna.alerts.outbox_reader")


class OutboxReader:
    """alerts.events -> delivery records and the retry queue in Redis."""

    def __init__(self, settings: Settings, store: AlertsStore, publisher: AlertEventPublisher,
                 metrics: AlertsMetrics, schedule: RetrySchedule, *, on_queued: Callable[[], None] = lambda: None):
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.schedule = schedule
        self.on_queued = on_queued
        self.hooks = {w.name for w in settings.webhooks}
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
        queued = False
        for name in dict.fromkeys(event.notify):
            did = delivery_id(event.event_id, name)
            if await self.store.get_delivery(did) is not None:
                continue
            record = DeliveryRecord(id=did, event_id=event.event_id, alert_id=event.alert_id, rule=event.rule,
                                    org=event.org, state=event.state, webhook=name,
                                    status=DeliveryStatus.pending, created_at=now, updated_at=now)
            verdict = gate(event, name, self.hooks, disabled, silences, now)
            if verdict is None:
                record.next_attempt_at = now + self.schedule.next_delay(0)
            else:
                record.status, record.reason, record.silence_id = verdict.status, verdict.reason, verdict.silence_id
            if not await self.store.create_delivery(record, record.next_attempt_at):
                continue
            if verdict is None:
                queued = True
            else:
                self.metrics.deliveries.labels(name, verdict.outcome_label).inc()
                if verdict.dead_letter:
                    await dead_letter_delivery(self.publisher, self.store, self.metrics, record, event,
                                               record.reason)
            log.info("delivery %s", record.status.value, extra={
                "delivery_id": did, "webhook": name, "alert_id": event.alert_id, "event_id": event.event_id})
        if queued:
            self.on_queued()
