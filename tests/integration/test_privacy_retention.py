"""Retention, enforced: the topics Lyssna creates carry the configured retention.ms, a
topic that keeps longer is reported at start, and every Redis key that holds post
text after a real run through the alerts pipeline expires within the configured time."""

from __future__ import annotations

import logging
import uuid

import pytest
from kafka.admin import KafkaAdminClient

from lyssna.common.config import Settings
from lyssna.common.kafka_admin import describe_retention
from lyssna.ingest.producer import PostProducer
from lyssna.local.receiver import WebhookReceiver
from tests.helpers.alerts_harness import (
    alerts_settings, api, breach, classified, count_rule, eventually, firing_delivery, produce, running_alerts,
    webhook,
)
from tests.helpers.redis_content import keys_holding, stored_keys

pytestmark = pytest.mark.integration

DAY_S = 86_400
RETENTION = {"raw_posts": "1d", "classified_posts": "2d", "dead_letters": "3d", "sample_texts": "4d",
             "alert_history": "5d"}


def with_retention(s: Settings, *, topics: dict[str, str] | None = None, **retention: str) -> Settings:
    data = s.model_dump()
    data["retention"].update(retention)
    if topics:
        data["kafka"]["topics"].update(topics)
    return Settings.model_validate(data).model_copy(update={"api_keys": list(s.api_keys)})


def _retention_ms(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-retention")
    try:
        return describe_retention(admin, topics)
    finally:
        admin.close()


async def test_topics_lyssna_creates_carry_the_configured_retention(settings, unique_id):
    # Names the topics fixture did not create: here the services create them.
    fresh = {name: f"test.{unique_id}.fresh.{name}" for name in
             ("posts_raw", "posts_classified", "alerts_events", "deadletter")}
    s = with_retention(alerts_settings(settings), topics=fresh, **RETENTION)
    boot = s.kafka.bootstrap_servers
    # Ingest creates the raw topic as it connects (classify's topics use the same layout).
    producer = PostProducer(boot, topics=[fresh["posts_raw"]], topic_layout=s.kafka.topic_layout())
    try:
        await producer.check()
    finally:
        await producer.close()
    async with running_alerts(s) as svc:
        drift = svc.metrics.registry.get_sample_value("lyssna_kafka_topic_retention_drift_seconds",
                                                      {"service": "alerts", "topic": fresh["posts_classified"]})
    mentions = f"{s.alerts.app_id}-mentions"  # alerts' internal copy of each mention, text included
    assert _retention_ms(boot, [*fresh.values(), mentions]) == {
        fresh["posts_raw"]: 1 * DAY_S * 1000, fresh["posts_classified"]: 2 * DAY_S * 1000,
        fresh["deadletter"]: 3 * DAY_S * 1000, fresh["alerts_events"]: 4 * DAY_S * 1000,
        mentions: 2 * DAY_S * 1000}
    assert drift is None  # created right: no drift


async def test_a_topic_that_keeps_longer_is_reported_at_start(settings, caplog):
    # The topics fixture made these with the broker's default retention (7 days).
    s = with_retention(alerts_settings(settings), **RETENTION)
    with caplog.at_level(logging.WARNING, logger="lyssna.common.kafka_admin"):
        async with running_alerts(s) as svc:
            value = svc.metrics.value("lyssna_kafka_topic_retention_drift_seconds", service="alerts",
                                      topic=s.kafka.topics.posts_classified)
    assert value == (7 - 2) * DAY_S
    drifted = {r.topic for r in caplog.records if r.getMessage().startswith("topic keeps records longer")}
    assert {s.kafka.topics.posts_classified, s.kafka.topics.alerts_events, s.kafka.topics.deadletter} <= drifted


async def test_every_redis_key_holding_post_text_expires_within_the_retention(settings):
    texts = [f"Retention probe {uuid.uuid4().hex} about overtime at Acme" for _ in range(4)]
    with WebhookReceiver() as rx:
        s = with_retention(alerts_settings(settings, rules=[count_rule("r", threshold=3)],
                                           webhooks=[webhook("hook", rx.url)], samples_per_alert=5),
                           sample_texts="4d", alert_history="5d")
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s, "Acme", n=0)
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                    [classified("Acme", text=t) for t in texts])
            await eventually(lambda: firing_delivery(client, "r", "Acme", status="delivered"),
                             what="the alert delivered")
            # The outbox event is published and its pending copy cleared.
            await eventually(lambda: _no_pending(svc), what="the pending event cleared")
    keys = stored_keys(s.redis.url, s.redis.key_prefix)
    holding = keys_holding(keys, texts)
    kinds = {k.split(":")[3] for k in holding}  # test:<id>:alerts:<kind>:...
    assert {"sample_pool", "event_samples"} <= kinds, holding  # the run did store post text
    by_name = {k.key: k for k in keys}
    too_long = {k: by_name[k].ttl for k in holding if not 0 < by_name[k].ttl <= 4 * DAY_S}
    assert too_long == {}, "keys holding post text without a TTL within retention.sample_texts"
    everything = {k.key: k.ttl for k in keys if k.key.split(":")[3] in ("event", "delivery", "alert")}
    assert everything and all(0 < ttl <= 5 * DAY_S for ttl in everything.values()), everything


async def _no_pending(svc) -> bool:
    return all(a.pending is None for a in (await svc.store.alerts()).values())
