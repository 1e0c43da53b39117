"""Distinct authors through the real alerts pipeline (Kafka, Faust table, Redis, receiver):
a rule with ``min_authors`` stays quiet on many posts from one pseudonymous author and
fires on the same count from enough authors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers.alerts_harness import (
    WINDOW, alerts_settings, api, classified, count_rule, early_in_window, eventually, produce, read_events,
    running_alerts, webhook,
)
from lyssna.common.pseudonyms import author_pseudonymizer
from lyssna.local.receiver import WebhookReceiver
from lyssna.common.contracts import AlertState, utcnow

pytestmark = pytest.mark.integration


def by(author: str, org: str):
    """A classified post about ``org`` written by ``author``, as ingest leaves it: pseudonymous."""
    import os

    authors = author_pseudonymizer("pseudonymous", os.environ)
    return classified(org).model_copy(update={"author": authors(author), "author_key_id": authors.key_id})


async def test_min_authors_holds_back_one_loud_author_and_fires_for_many(settings):
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("many-voices", threshold=6, min_authors=3)],
                            webhooks=[webhook("hook", rx.url)])
        async with running_alerts(s) as svc:
            await early_in_window(WINDOW, need=timedelta(seconds=12))
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                    [by("@loud.one", "Acme") for _ in range(8)]
                    + [by(f"@voice{i % 3}", "Globex") for i in range(6)])
            boot, topic = s.kafka.bootstrap_servers, s.kafka.topics.alerts_events

            def counted(org: str) -> int:
                start = utcnow() - timedelta(minutes=5)
                return sum(n for (_, t, _, lang), n in svc.counter.counts.cells(org, start, utcnow()).items()
                           if t == "*" and lang == "*")

            await eventually(lambda: (counted("Acme"), counted("Globex")) == (8, 6), timeout=60,
                             what="every post to be counted")
            # A full evaluation pass after that: Acme's eight posts by one author have not fired.
            seen_at = svc.engine.last_pass
            await eventually(lambda: svc.engine.last_pass and svc.engine.last_pass > seen_at,
                             what="another evaluation pass")
            await eventually(lambda: read_events(boot, topic), what="Globex's alert event")
            events = read_events(boot, topic)
            assert [(e.org, e.state, e.count, e.authors) for e in events] == [
                ("Globex", AlertState.firing, 6, 3)]
            await eventually(lambda: len(rx.ok) >= 1, what="the delivery")
            body = rx.ok[0].json
            assert (body["organization"], body["count"], body["authors"]) == ("Globex", 6, 3)
            async with api(svc) as client:
                metrics = (await client.get("/metrics")).text
            assert 'lyssna_alerts_distinct_authors{org="Acme",sentiment="all"} 1.0' in metrics
            assert 'lyssna_alerts_distinct_authors{org="Globex",sentiment="negative"} 3.0' in metrics
