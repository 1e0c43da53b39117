"""An ambiguous watched name through the real pipeline: the classify worker (real
model, real relevance head) reads raw posts from Kafka, the alerts service counts
what it produced. A dog called Pluto is not counted for Pluto Logistik; posts
about the company are."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import httpx
import pytest

from lyssna.classify.relevance import RelevanceHead
from lyssna.common.contracts import AlertState, ClassifiedPost, Post
from tests.helpers.alerts_harness import alerts_settings, count_rule, eventually, read_events, running_alerts
from tests.helpers.kafka_io import ServiceProcess, free_port, produce, read_all, wait_for

pytestmark = pytest.mark.integration

ORG = "Pluto Logistik"
CONFIG = f"""\
organizations:
  - name: {ORG}
    aliases: [Pluto, "@plutologistik"]
    ambiguous: true
    description: "Swedish logistics company: warehouses, parcel delivery, truck drivers, terminal workers"
    context: [logistik, lager, paket, leverans, terminal, chaufför, truckförare]
classify:
  batch_size: 8
  batch_within: 100ms
"""
NOT_ABOUT = {
    "dog": "Vår hund Pluto fyller tre år idag och fick en ny boll 🐶",
    "vet": "Pluto har varit hos veterinären igen, stackars vovve har ont i tassen.",
    "planet": "Såg en dokumentär om Pluto och varför den inte längre räknas som planet.",
}
ABOUT = {
    "hiring": "Pluto söker truckförare till terminalen i Jönköping, ansök senast fredag!",
    "overtime": "Tredje veckan med övertid på Pluto-lagret, chefen lovar fler paketsorterare men inget händer.",
    "pay": "Pluto har sänkt lönen för nattskiftet på terminalen i Eskilstuna, facket är rasande.",
}


def worker_env(settings, topics, unique_id, port) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "REDIS_URL": settings.redis.url,
            "LYSSNA_CLASSIFY_PORT": str(port), "LYSSNA_CLASSIFY_APP_ID": f"classify-test-{unique_id}",
            **topics.as_env()}


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{re.escape(want)}}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def test_ambiguous_name_is_not_counted_and_a_real_mention_is(infra, topics, settings, unique_id, tmp_path):
    config = tmp_path / "lyssna.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    port = free_port()
    worker = ServiceProcess("classify", worker_env(settings, topics, unique_id, port), port=port,
                            log_dir=tmp_path, config=config).start()
    now = datetime.now(timezone.utc)
    posts = [Post(id=key, source="test", author=f"author-{key}", text=text, created_at=now)
             for key, text in {**NOT_ABOUT, **ABOUT}.items()]
    try:
        worker.wait_ready(timeout=300)
        produce(infra.bootstrap_servers, topics.posts_raw, [(p.id.encode(), p.to_bytes()) for p in posts])
        out: dict[str, ClassifiedPost] = {}

        def all_classified() -> bool:
            out.update((c.id, c) for c in map(ClassifiedPost.from_bytes,
                                               read_all(infra.bootstrap_servers, topics.posts_classified,
                                                        idle_ms=800)))
            return len(out) == len(posts)

        wait_for(all_classified, timeout=120, interval=1.0, what="every post classified")
    finally:
        worker.stop()

    # What classify decided, and why, is in each record.
    threshold = RelevanceHead.load().threshold
    for key in NOT_ABOUT:
        c = out[key]
        assert c.orgs == [] and c.rejected_orgs == {ORG: "not_relevant"}, (key, c.org_relevance)
        assert c.org_relevance[ORG] < threshold
    for key in ABOUT:
        c = out[key]
        assert c.orgs == [ORG] and c.rejected_orgs == {}, (key, c.org_relevance)
        assert c.org_relevance[ORG] >= threshold

    # Alerts counts the three posts about the company: "three or more" fires,
    # "four or more" never does, and no post about the dog or the planet is a sample.
    s = alerts_settings(settings, rules=[count_rule("pluto-3", threshold=3, window="5m", notify=[]),
                                         count_rule("pluto-4", threshold=4, window="5m", notify=[])],
                        organizations=[ORG], samples_per_alert=10)
    async with running_alerts(s) as svc:
        boot, topic = s.kafka.bootstrap_servers, s.kafka.topics.alerts_events
        await eventually(lambda: any(e.rule == "pluto-3" and e.state == AlertState.firing
                                     for e in read_events(boot, topic)), timeout=90, what="pluto-3 to fire")
        metrics_url = f"http://{s.alerts.host}:{s.alerts.port}/metrics"

        async def caught_up() -> bool:
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(metrics_url)).text
            return metric(text, "lyssna_consumer_lag_messages", service="alerts",
                          topic=s.kafka.topics.posts_classified) == 0.0

        await eventually(caught_up, timeout=60, what="alerts to have read every classified post")
        passed = svc.engine.last_pass
        await eventually(lambda: svc.engine.last_pass and svc.engine.last_pass > passed, what="one more pass")
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(metrics_url)).text
        assert metric(text, "lyssna_alerts_distinct_authors", org=ORG, sentiment="all") == len(ABOUT)
        events = read_events(boot, topic)
        assert [e.rule for e in events if e.state == AlertState.firing] == ["pluto-3"]
        [firing] = [e for e in events if e.state == AlertState.firing]
        assert firing.org == ORG and firing.count == len(ABOUT)
        assert {x.id for x in firing.samples} <= set(ABOUT)

