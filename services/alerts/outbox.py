"""Publishing to Kafka: alert events to the outbox topic, failures to the dead letter.

:class:`AlertEventPublisher` is only the Kafka side of the outbox: the outbox
itself is each alert's ``pending`` event in Redis (:class:`.store.StoredAlert`),
written before publishing and cleared once Kafka has it.

Both wait for the broker's acknowledgement (``acks=all``, idempotent
producer): an event counts as published only once Kafka has it.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from lyssna.common.config import Settings
from lyssna.common.contracts import AlertEvent, DeadLetter


class AlertEventPublisher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.events_topic = settings.kafka.topics.alerts_events
        self.deadletter_topic = settings.kafka.topics.deadletter
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", enable_idempotence=True,
            client_id=f"{settings.alerts.app_id}-outbox", request_timeout_ms=30_000)

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, event: AlertEvent) -> None:
        # Keyed by alert id: a firing and its resolution stay in order on one partition.
        await self.producer.send_and_wait(self.events_topic, key=event.alert_id.encode(),
                                          value=event.to_bytes())

    async def dead_letter(self, record: DeadLetter) -> None:
        await self.producer.send_and_wait(self.deadletter_topic,
                                          key=record.key.encode() if record.key else None,
                                          value=record.to_bytes())

    async def kafka_reachable(self) -> bool:
        await self.producer.client.fetch_all_metadata()
        return True
