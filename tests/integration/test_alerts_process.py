"""`lyssna serve alerts` as a real process: killed mid-delivery, stopped, refused.

The receiver holds the first deliveries open, the process gets SIGKILL while
they are in flight, and a new process must deliver every alert, each with the
one webhook-id it had from the start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from lyssna.alerts.signing import generate_secret
from tests.helpers.alerts_harness import (
    alerts_config_file, classified, count_rule, early_in_window_sync, produce, read_events, service_env, webhook,
)
from tests.helpers.kafka_io import ROOT, ServiceProcess, free_port, wait_for
from lyssna.local.receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET_ENV = "LYSSNA_TEST_WEBHOOK_SECRET"
ORGS = ("Acme", "Globex", "Initech")


def test_killed_mid_delivery_then_restarted_delivers_every_alert_with_one_webhook_id(
        settings, tmp_path, unique_id):
    secret = generate_secret()
    with WebhookReceiver(secrets=secret) as rx:
        rx.hold()
        port = free_port()
        config = alerts_config_file(
            tmp_path / "alerts.yaml", organizations=ORGS,
            rules=[count_rule("r", threshold=2, window="60s")],
            webhooks=[webhook("hook", rx.url, secret_env=SECRET_ENV)],
            evaluate_interval="1s", delivery_lease="5s", retry_schedule=["0s", "1s", "2s", "2s", "5s", "5s"])
        env = service_env(settings, port=port, app_id=f"alerts-kill-{unique_id}", **{SECRET_ENV: secret})
        proc = ServiceProcess("alerts", env, port=port, log_dir=tmp_path, config=config)
        proc.start().wait_ready()
        try:
            early_in_window_sync(timedelta(seconds=60), need=timedelta(seconds=40))
            produce(settings.kafka.bootstrap_servers, settings.kafka.topics.posts_classified,
                    [classified(org) for org in ORGS for _ in range(2)])
            # The deliveries reach the receiver, which does not answer: they are in flight.
            wait_for(lambda: rx.requests, timeout=90, what="a delivery in flight")
            proc.kill()
            in_flight = {q.webhook_id for q in rx.requests}
            rx.release()

            proc.start()

            def firing_delivered():
                ok = {q.json["alert_id"] for q in rx.ok if q.json["type"] == "alert.firing"
                      and rx.requests.index(q) >= len(in_flight)}
                proc.ready()  # fails the wait at once if the process died
                return len(ok) == len(ORGS)

            wait_for(firing_delivered, timeout=120, what="every firing alert delivered after the restart")

            events = [e for e in read_events(settings.kafka.bootstrap_servers, settings.kafka.topics.alerts_events)
                      if e.state == "firing"]
            assert sorted(e.org for e in events) == sorted(ORGS)
            # Per alert state change the receiver saw exactly one webhook-id, the event's id,
            # however often it was sent.
            ids: dict[tuple[str, str], set[str]] = {}
            for q in rx.requests:
                ids.setdefault((q.json["alert_id"], q.json["type"]), set()).add(q.webhook_id)
                assert q.webhook_id == q.json["event_id"]
                assert q.verified, q.verify_error
            assert all(len(v) == 1 for v in ids.values()), ids
            # What was in flight at the kill was sent again after the restart.
            resent = [q.webhook_id for q in rx.requests[len(in_flight):]]
            assert in_flight <= set(resent)

            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              headers={"Authorization": f"Bearer {settings.api_keys[0]}"}) as api:
                for e in events:
                    [record] = [d for d in api.get(f"/v1/alerts/{e.alert_id}/deliveries").json()["deliveries"]
                                if d["event_id"] == e.event_id]
                    assert record["status"] == "delivered"
                    if e.event_id in in_flight:
                        assert record["attempts"][0]["outcome"] == "interrupted"
        finally:
            rc = proc.stop()
        assert rc == 0, proc.log_tail()


def test_sigterm_stops_cleanly(settings, tmp_path, unique_id):
    port = free_port()
    config = alerts_config_file(tmp_path / "alerts.yaml", rules=[], webhooks=[])
    proc = ServiceProcess("alerts", service_env(settings, port=port, app_id=f"alerts-term-{unique_id}"),
                          port=port, log_dir=tmp_path, config=config)
    proc.start().wait_ready()
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    assert proc.stop() == 0, proc.log_tail()
    assert "alerts stopped" in proc.log_tail()


def test_loopback_webhook_without_opt_in_refuses_to_start(settings, tmp_path, unique_id):
    config = alerts_config_file(
        tmp_path / "alerts.yaml", rules=[count_rule("r", notify=["hr"])],
        webhooks=[webhook("hr", "http://127.0.0.1:8099/services/SECRET-TOKEN", private=False)])
    env = service_env(settings, port=free_port(), app_id=f"alerts-refuse-{unique_id}")
    done = subprocess.run([sys.executable, "-m", "lyssna.cli", "serve", "alerts", "--config", str(config)],
                          env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "webhooks[0] (hr).url" in done.stderr
    assert "127.0.0.1" in done.stderr and "loopback" in done.stderr
    assert "allow_private_network: true" in done.stderr
    assert "SECRET-TOKEN" not in done.stderr
