"""Webhook retries against a real receiver, Kafka and Redis: a receiver's
``Retry-After`` moves the next attempt, and a retry pending when the service
stops goes out after it starts again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.helpers.alerts_harness import (
    alerts_settings, api, breach, count_rule, eventually, firing_delivery, running_alerts, webhook,
)
from lyssna.local.receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.integration

ASKED = 3  # seconds the receiver asks for; the schedule alone would retry at once


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_retry_after_from_the_receiver_moves_the_next_attempt(settings):
    with WebhookReceiver() as rx:
        rx.script(Reply(429, {"Retry-After": str(ASKED)}))
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url)],
                            retry_schedule=["0s", "0s", "0s"])
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s)
            record = await eventually(lambda: firing_delivery(client, "r", "Acme", status="delivered"),
                                      what="delivery after the 429")
        first, second = record["attempts"]
        assert (first["status_code"], first["outcome"], first["retry_after"]) == (429, "retry", str(ASKED))
        asked_until = when(first["finished_at"]) + timedelta(seconds=ASKED)
        assert when(first["next_attempt_at"]) >= asked_until
        assert when(second["started_at"]) >= asked_until
        assert second["status_code"] == 200
        # What the receiver saw: the same webhook-id twice, at least the asked time apart.
        rejected, accepted = [q for q in rx.requests if q.webhook_id == record["event_id"]]
        assert accepted.received_at - rejected.received_at >= ASKED


async def test_a_retry_pending_when_the_service_stops_goes_out_after_it_starts_again(settings):
    with WebhookReceiver() as rx:
        rx.respond(503)
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url)],
                            retry_schedule=["0s"] + ["2s"] * 9)
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s)
            before = await eventually(lambda: firing_delivery(client, "r", "Acme", status="retrying"),
                                      what="a failed attempt with the next one scheduled")
        # Stopped: the pending retry is only in Redis now. The receiver recovers meanwhile.
        rx.respond(200)
        async with running_alerts(s) as svc, api(svc) as client:
            after = await eventually(lambda: firing_delivery(client, "r", "Acme", status="delivered"),
                                     what="the pending retry after the restart")
        assert after["id"] == before["id"]
        attempts = after["attempts"]
        assert attempts[0]["status_code"] == 503 and attempts[-1]["outcome"] == "delivered"
        assert all(a["outcome"] in ("retry", "interrupted") for a in attempts[:-1])
        assert when(attempts[-1]["started_at"]) >= when(before["attempts"][0]["next_attempt_at"])
        ok = [q for q in rx.ok if q.webhook_id == after["event_id"]]
        assert len(ok) == 1
