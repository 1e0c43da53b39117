"""Test support for the alerts service: settings, posts, topic reads, waiting.

Used by tests/integration/test_alerts_*.py and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import httpx
import yaml

from kafka import KafkaProducer

from lyssna.alerts.outbox import AlertEventPublisher
from lyssna.alerts.windows import window_for
from lyssna.common.config import Settings
from lyssna.common.contracts import AlertEvent, ClassifiedPost, DeadLetter, ModelInfo
from tests.helpers.kafka_io import eventually, free_port, read_all  # noqa: F401  (re-exported)

MODEL = ModelInfo(encoder="test-encoder", heads="test-heads")


def alerts_settings(base: Settings, *, rules: list[dict] = (), webhooks: list[dict] = (),
                    organizations: Iterable[str] = ("Acme", "Globex", "Initech"),
                    port: int | None = None, **alerts: Any) -> Settings:
    """``base`` (the test's settings fixture) with a watchlist, rules, webhooks and
    fast alerts timings: 1 s count buckets, evaluation every 0.5 s, a short retry schedule."""
    # Python-mode dump: durations stay timedeltas (their text form drops sub-second parts).
    data = base.model_dump()
    # The test's unique id (in its topic names) in the app id too, so the harness
    # deletes the app's changelogs and consumer groups with the test's topics.
    test_id = base.kafka.topics.posts_raw.split(".")[1] if base.kafka.topics.posts_raw.startswith("test.") else "x"
    data["alerts"].update({**FAST_ALERTS, "app_id": f"alerts-test-{test_id}-{uuid.uuid4().hex[:6]}",
                           "port": port or free_port(), **alerts})
    data["organizations"] = [{"name": o, "aliases": []} for o in organizations]
    data["rules"] = list(rules)
    data["webhooks"] = list(webhooks)
    return Settings.model_validate(data).model_copy(update={"api_keys": list(base.api_keys)})


FAST_ALERTS = {
    "bucket": "1s",
    "evaluate_interval": "500ms",
    "retry_schedule": ["0s", "1s", "1s", "2s", "2s"],
    "delivery_lease": "6s",
    "delivery_timeout": "3s",
}


def alerts_config_file(path: Path, *, rules: list[dict] = (), webhooks: list[dict] = (),
                       organizations: Iterable[str] = ("Acme", "Globex", "Initech"), **alerts: Any) -> Path:
    """A config file for ``lyssna serve alerts`` (infrastructure comes from the environment)."""
    doc = {
        "alerts": {**FAST_ALERTS, **alerts},
        "organizations": [{"name": o, "aliases": []} for o in organizations],
        "rules": list(rules),
        "webhooks": list(webhooks),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def service_env(settings: Settings, *, port: int, app_id: str, **extra: str) -> dict[str, str]:
    """Environment for ``lyssna serve alerts`` wired to the test's Kafka topics and Redis prefix."""
    t = settings.kafka.topics
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "REDIS_URL": settings.redis.url,
        "LYSSNA_REDIS_PREFIX": settings.redis.key_prefix, "LYSSNA_API_KEY": ",".join(settings.api_keys),
        "LYSSNA_TOPIC_POSTS_RAW": t.posts_raw, "LYSSNA_TOPIC_POSTS_CLASSIFIED": t.posts_classified,
        "LYSSNA_TOPIC_ALERTS_EVENTS": t.alerts_events, "LYSSNA_TOPIC_DEADLETTER": t.deadletter,
        "LYSSNA_ALERTS_PORT": str(port), "LYSSNA_ALERTS_APP_ID": app_id, **extra,
    }


WINDOW = timedelta(seconds=20)  # count_rule's window


def count_rule(name: str, *, threshold: int = 3, window: str = "20s", notify: list[str] = ("hook",),
               **extra: Any) -> dict:
    return {"name": name, "org": "*", "window": window, "cooldown": "1h",
            "condition": {"type": "count", "threshold": threshold}, "notify": list(notify), **extra}


def webhook(name: str, url: str, *, secret_env: str | None = None, format: str = "json",
            private: bool = True, timeout: str = "3s") -> dict:
    hook = {"name": name, "url": url, "format": format, "allow_private_network": private, "timeout": timeout}
    if secret_env:
        hook["secret_env"] = secret_env
    return hook


def classified(org: str | list[str], *, sentiment: str = "negative", topics: Iterable[str] = ("employee_satisfaction",),
               lang: str = "sv", created_at: datetime | None = None, text: str | None = None,
               post_id: str | None = None) -> ClassifiedPost:
    orgs = [org] if isinstance(org, str) else list(org)
    pid = post_id or f"test:{uuid.uuid4().hex}"
    return ClassifiedPost(id=pid, source="test", url=f"https://example.org/posts/{pid}",
                          text=text or f"Det är tungt att jobba på {orgs[0] if orgs else 'stället'} just nu",
                          created_at=created_at or datetime.now(timezone.utc), lang=lang, orgs=orgs,
                          topics=list(topics), sentiment=sentiment, model=MODEL)


def produce(bootstrap: str, topic: str, records: Iterable[ClassifiedPost | bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for r in records:
            if isinstance(r, bytes):
                producer.send(topic, key=b"raw", value=r)
            else:
                producer.send(topic, key=r.id.encode(), value=r.to_bytes())
        producer.flush(timeout=30)
    finally:
        producer.close()


def read_events(bootstrap: str, topic: str) -> list[AlertEvent]:
    return [AlertEvent.from_bytes(v) for v in read_all(bootstrap, topic)]


def read_deadletters(bootstrap: str, topic: str) -> list[DeadLetter]:
    return [DeadLetter.from_bytes(v) for v in read_all(bootstrap, topic)]


def _wait_needed(window: timedelta, need: timedelta, now: datetime | None = None) -> float:
    """Seconds until a window with ``need`` left begins (0 if the current one has it),
    by the alerts service's own window boundaries."""
    now = now or datetime.now(timezone.utc)
    left = (window_for(now, window).end - now).total_seconds()
    return left + 0.05 if left < need.total_seconds() else 0.0


async def early_in_window(window: timedelta, *, need: timedelta) -> None:
    """Wait, if needed, for the next window to begin so that at least ``need`` of it
    is left: posts made now are then judged while their window is current."""
    await asyncio.sleep(_wait_needed(window, need))


def early_in_window_sync(window: timedelta, *, need: timedelta) -> None:
    time.sleep(_wait_needed(window, need))


def window_with_room(need: timedelta, *, at_least: timedelta = timedelta(hours=6),
                     now: datetime | None = None) -> str:
    """A rule window (``"375m"``) of whole minutes, ``at_least`` long or a little longer, whose current
    (epoch-aligned) window has ``need`` left. For a test that needs many minutes in
    one window: waiting for the next one to begin could take that long, past the
    per-test timeout (a 6 h window is in its last 15 minutes 1/24 of the day).
    Windows of different lengths end at different times, so one of the first few
    has room."""
    for extra in range(240):
        size = at_least + timedelta(minutes=extra)
        if _wait_needed(size, need, now) == 0.0:
            return f"{size // timedelta(minutes=1)}m"
    raise AssertionError(f"no window from {at_least} to {at_least + timedelta(minutes=239)} has {need} left now")


@contextlib.asynccontextmanager
async def running_alerts(settings: Settings, **kwargs):
    """The alerts service in this event loop, ready (counts recovered) when entered."""
    from lyssna.alerts.service import AlertsService

    service = AlertsService(settings, **kwargs)
    await service.start()
    try:
        await eventually(service.counter.ready, timeout=60, what="the counts table to be ready")
        yield service
    finally:
        await service.stop()


def api(service) -> httpx.AsyncClient:
    """A client of the running service's alerts API, with its key."""
    s = service.settings
    return httpx.AsyncClient(base_url=f"http://{s.alerts.host}:{s.alerts.port}",
                             headers={"Authorization": f"Bearer {s.api_keys[0]}"}, timeout=10)


async def breach(settings: Settings, org: str = "Acme", n: int = 3, **kw) -> None:
    """``n`` matching posts about ``org``, early enough in a :data:`WINDOW` to be judged in it."""
    await early_in_window(WINDOW, need=timedelta(seconds=12))
    produce(settings.kafka.bootstrap_servers, settings.kafka.topics.posts_classified,
            [classified(org, **kw) for _ in range(n)])


async def firing_delivery(client: httpx.AsyncClient, rule: str, org: str, *,
                          status: str | None = None) -> dict | None:
    """The delivery record of the firing event of ``rule`` for ``org``, once it exists
    (and, given ``status``, once it has that status)."""
    events = (await client.get("/v1/alerts/history")).json()["events"]
    firing = [e for e in events if e["rule"] == rule and e["org"] == org and e["state"] == "firing"]
    if not firing:
        return None
    deliveries = (await client.get(f"/v1/alerts/{firing[0]['alert_id']}/deliveries")).json()["deliveries"]
    mine = [d for d in deliveries if d["event_id"] == firing[0]["event_id"] and status in (None, d["status"])]
    return mine[0] if mine else None



class RecordingPublisher(AlertEventPublisher):
    """The real outbox publisher (Kafka), remembering what this replica published,
    for tests that check each round rather than read the topic every time."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.sent: list[AlertEvent] = []

    async def publish(self, event: AlertEvent) -> None:
        await super().publish(event)
        self.sent.append(event)
