"""The alerts service against real Kafka, Redis and a local webhook receiver.

Posts go into the test's posts.classified topic; what comes out is read from
the alerts.events topic, the receiver and the service's API.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers.alerts_harness import (
    WINDOW, alerts_settings, api, breach, classified, count_rule, early_in_window, eventually, firing_delivery,
    produce, read_deadletters, read_events, running_alerts, webhook,
)
from lyssna.local.receiver import Reply, WebhookReceiver
from lyssna.alerts.signing import generate_secret
from lyssna.alerts.windows import window_for
from lyssna.common.contracts import AlertState, utcnow

pytestmark = pytest.mark.integration

SECRET_ENV = "LYSSNA_TEST_WEBHOOK_SECRET"


async def test_breach_fires_once_and_resolves_once_with_signed_delivery(settings, monkeypatch):
    secret = generate_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    with WebhookReceiver(secrets=secret) as rx:
        s = alerts_settings(settings, rules=[count_rule("neg-buzz", threshold=3, window="20s")],
                            webhooks=[webhook("hook", rx.url, secret_env=SECRET_ENV)])
        async with running_alerts(s) as svc:
            # Below the threshold for another org, and a post with no org: neither may fire.
            await breach(s, "Acme", n=3)
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                    [classified("Globex"), classified([], topics=())])
            topic = s.kafka.topics.alerts_events
            boot = s.kafka.bootstrap_servers

            def states():
                return [e.state for e in read_events(boot, topic)]

            await eventually(lambda: AlertState.resolved in states(), timeout=90,
                             what="the alert to fire and then resolve")
            # One more full evaluation pass after the resolution: nothing new may come.
            resolved_at = svc.engine.last_pass
            await eventually(lambda: svc.engine.last_pass and svc.engine.last_pass > resolved_at,
                             what="another evaluation pass")
            events = read_events(boot, topic)
            assert [e.state for e in events] == [AlertState.firing, AlertState.resolved]
            firing, resolved = events
            assert firing.alert_id == resolved.alert_id
            assert firing.event_id != resolved.event_id
            assert (firing.rule, firing.org, firing.count) == ("neg-buzz", "Acme", 3)
            assert firing.notify == ["hook"]
            assert firing.samples and all(x.url for x in firing.samples)

            # Both events reach the receiver, signed, with webhook-id = event id.
            await eventually(lambda: len(rx.ok) >= 2, what="both events at the receiver")
            got = {q.webhook_id: q for q in rx.ok}
            assert set(got) == {firing.event_id, resolved.event_id}
            assert all(q.verified for q in rx.requests), [q.verify_error for q in rx.requests]
            assert got[firing.event_id].json["type"] == "alert.firing"
            assert got[resolved.event_id].json["type"] == "alert.resolved"

            async with api(svc) as client:
                history = (await client.get("/v1/alerts/history")).json()["events"]
                assert {e["event_id"] for e in history} == {firing.event_id, resolved.event_id}
                assert (await client.get("/v1/alerts")).json()["alerts"] == []
                detail = (await client.get(f"/v1/alerts/{firing.alert_id}")).json()
                assert {d["status"] for d in detail["deliveries"]} == {"delivered"}
                metrics = (await client.get("/metrics")).text
            assert 'lyssna_alerts_events_total{rule="neg-buzz",state="firing"} 1.0' in metrics
            assert 'lyssna_alerts_events_total{rule="neg-buzz",state="resolved"} 1.0' in metrics
            assert 'lyssna_alerts_deliveries_total{outcome="delivered",webhook="hook"} 2.0' in metrics
            assert 'lyssna_alerts_delivery_latency_seconds_count{webhook="hook"} 2.0' in metrics


async def test_receiver_that_is_down_gets_the_alert_when_it_comes_back(settings, monkeypatch):
    # During a secret rotation every delivery carries a signature per secret; this
    # receiver still has only the old one.
    old, new = generate_secret(), generate_secret()
    monkeypatch.setenv(SECRET_ENV, f"{new},{old}")
    rx = WebhookReceiver(secrets=old).start()
    rx.down()
    try:
        s = alerts_settings(settings, rules=[count_rule("r")],
                            webhooks=[webhook("hook", rx.url, secret_env=SECRET_ENV)],
                            retry_schedule=["0s", "1s", "1s", "2s", "2s", "3s", "3s", "5s", "5s", "10s"])
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s)

            async def failed_twice():
                d = await firing_delivery(client, "r", "Acme")
                return d if d and len(d["attempts"]) >= 2 else None

            down = await eventually(failed_twice, what="two failed attempts while the receiver is down")
            assert down["status"] == "retrying"
            assert all(a["outcome"] == "retry" and "Connect" in a["error"] for a in down["attempts"])
            assert down["next_attempt_at"]
            rx.up()

            async def delivered():
                d = await firing_delivery(client, "r", "Acme")
                return d if d and d["status"] == "delivered" else None

            record = await eventually(delivered, what="delivery once the receiver is back")
            assert record["attempts"][-1]["outcome"] == "delivered"
            assert record["attempts"][-1]["status_code"] == 200
            got = [q for q in rx.ok if q.webhook_id == record["event_id"]]
            assert len(got) == 1 and got[0].verified
    finally:
        rx.stop()


async def test_gone_disables_the_endpoint_until_reenabled(settings):
    with WebhookReceiver() as rx:
        rx.script(Reply(410))
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url)])
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s, "Acme")

            async def hook_state():
                return (await client.get("/v1/webhooks/hook")).json()

            state = await eventually(lambda: _disabled(hook_state()), what="the webhook to be disabled")
            assert "410" in state["disabled_reason"]
            first = await firing_delivery(client, "r", "Acme")
            assert first["status"] == "disabled"

            # A later alert is recorded as disabled and not sent.
            await breach(s, "Globex")
            second = await eventually(lambda: firing_delivery(client, "r", "Globex"),
                                      what="the Globex alert's delivery record")
            assert second["status"] == "disabled"
            assert [q.webhook_id for q in rx.requests] == [first["event_id"]]
            denied = await client.post(f"/v1/alerts/{second['alert_id']}/redeliver",
                                       json={"event_id": second["event_id"]})
            assert denied.status_code == 409 and "enable it first" in denied.json()["detail"]

            # An operator re-enables it and asks for the alert again.
            assert (await client.post("/v1/webhooks/hook/enable")).json()["enabled"] is True
            again = await client.post(f"/v1/alerts/{second['alert_id']}/redeliver",
                                      json={"event_id": second["event_id"]})
            assert again.status_code == 202

            async def delivered():
                d = await firing_delivery(client, "r", "Globex")
                return d if d["status"] == "delivered" else None

            record = await eventually(delivered, what="the redelivery")
            assert record["redeliveries"] == 1
            assert [q.webhook_id for q in rx.ok] == [second["event_id"]]


async def _disabled(state_coro):
    state = await state_coro
    return state if not state["enabled"] else None


async def test_silenced_alert_is_recorded_and_not_delivered(settings):
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url)])
        async with running_alerts(s) as svc, api(svc) as client:
            created = await client.post("/v1/silences", json={
                "matchers": {"org": "Acme"}, "ends_at": "2999-01-01T00:00:00Z",
                "created_by": "test", "comment": "known issue"})
            assert created.status_code == 201, created.text
            silence_id = created.json()["id"]
            await early_in_window(WINDOW, need=timedelta(seconds=12))
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified,
                    [classified(org) for org in ("Acme", "Globex") for _ in range(3)])

            globex = await eventually(lambda: firing_delivery(client, "r", "Globex"), what="Globex's delivery")
            acme = await eventually(lambda: firing_delivery(client, "r", "Acme"), what="Acme's delivery")
            assert acme["status"] == "silenced" and acme["silence_id"] == silence_id
            assert acme["attempts"] == []
            await eventually(lambda: any(q.webhook_id == globex["event_id"] for q in rx.ok),
                             what="Globex's alert at the receiver")
            assert acme["event_id"] not in {q.webhook_id for q in rx.requests}
            # Kept in the history and the active alerts all the same.
            active = {(a["rule"], a["org"]) for a in (await client.get("/v1/alerts")).json()["alerts"]}
            assert active >= {("r", "Acme"), ("r", "Globex")}
            metrics = (await client.get("/metrics")).text
            assert 'lyssna_alerts_deliveries_total{outcome="silenced",webhook="hook"} 1.0' in metrics


async def test_last_failed_attempt_goes_to_the_dead_letter(settings):
    with WebhookReceiver() as rx:
        rx.respond(503, {"Retry-After": "1"})
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url)],
                            retry_schedule=["0s", "1s", "1s"])
        async with running_alerts(s) as svc, api(svc) as client:
            produce(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified, [b"{not json"])
            await breach(s)

            async def dead():
                d = await firing_delivery(client, "r", "Acme")
                # Saved as dead first, then marked once Kafka has its dead letter.
                return d if d and d["status"] == "dead" and d["deadlettered"] else None

            record = await eventually(dead, what="the delivery to give up and be dead-lettered")
            assert [a["status_code"] for a in record["attempts"]] == [503, 503, 503]
            assert all(a["retry_after"] == "1" for a in record["attempts"][:-1])
            assert {q.webhook_id for q in rx.requests} == {record["event_id"]}

            def letters():
                return read_deadletters(s.kafka.bootstrap_servers, s.kafka.topics.deadletter)

            found = await eventually(lambda: len(letters()) >= 2 and letters(), what="two dead letters")
            by_topic = {d.topic: d for d in found}
            assert by_topic[s.kafka.topics.posts_classified].payload == "{not json"
            webhook_letter = by_topic[s.kafka.topics.alerts_events]
            assert webhook_letter.key == record["id"]
            assert "gave up after 3 attempts" in webhook_letter.reason
            metrics = (await client.get("/metrics")).text
            assert 'lyssna_deadletter_records_total{service="alerts"} 2.0' in metrics


async def test_webhook_on_loopback_without_opt_in_is_refused_at_start(settings):
    from lyssna.alerts.service import AlertsService
    from lyssna.common.config import ConfigError

    s = alerts_settings(settings, rules=[count_rule("r")],
                        webhooks=[webhook("hook", "http://127.0.0.1:9/hooks/T0KEN", private=False)])
    with pytest.raises(ConfigError) as err:
        await AlertsService(s).start()
    msg = str(err.value)
    assert "webhooks[0] (hook).url" in msg
    assert "127.0.0.1" in msg and "loopback" in msg and "allow_private_network: true" in msg
    assert "T0KEN" not in msg


# 127.0.0.2 plays "a public address" in these tests: the policy below approves
# it, so the tests prove the rebinding guards without ever connecting to an
# address outside the loopback range.
STAND_IN_PUBLIC = "127.0.0.2"


def stand_in_policy(addr):
    """The default policy, except that STAND_IN_PUBLIC counts as public."""
    from lyssna.common.urlsafety import why_not_public

    return None if str(addr) == STAND_IN_PUBLIC else why_not_public(addr)


async def test_webhook_that_turns_private_after_start_is_refused_at_delivery(settings):
    """DNS rebinding: the name was public at start-up and points at loopback when sending."""
    import socket

    with WebhookReceiver() as rx:
        calls = []

        def resolver(host, port, **kw):
            calls.append(host)
            addr = STAND_IN_PUBLIC if len(calls) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port))]

        url = f"http://hooks.example.com:{rx.port}/hook"
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", url, private=False)])
        async with running_alerts(s, resolver=resolver, address_policy=stand_in_policy) as svc, api(svc) as client:
            await breach(s)

            async def failed():
                d = await firing_delivery(client, "r", "Acme")
                return d if d and d["status"] == "failed" else None

            record = await eventually(failed, what="the delivery to be refused")
            error = record["attempts"][0]["error"]
            assert "127.0.0.1" in error and "loopback" in error and "allow_private_network" in error
            assert rx.requests == []
            assert len(calls) >= 2  # the start-up check and the delivery both resolved


async def test_delivery_connects_only_to_the_address_the_check_approved(settings):
    """DNS rebinding between the check and the connection: the check approves
    STAND_IN_PUBLIC; the system resolver would say 127.0.0.1 for "localhost",
    where another receiver listens on the same port. The request must reach the
    approved address and never the other one."""
    import socket

    with WebhookReceiver(host="127.0.0.1") as elsewhere:
        with WebhookReceiver(host=STAND_IN_PUBLIC, port=elsewhere.port) as approved:
            def resolver(host, port, **kw):
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (STAND_IN_PUBLIC, port))]

            url = f"http://localhost:{elsewhere.port}/hook"
            s = alerts_settings(settings, rules=[count_rule("r")],
                                webhooks=[webhook("hook", url, private=False, timeout="5s")])
            async with running_alerts(s, resolver=resolver, address_policy=stand_in_policy) as svc, \
                    api(svc) as client:
                await breach(s)

                async def delivered():
                    d = await firing_delivery(client, "r", "Acme")
                    return d if d and d["status"] == "delivered" else None

                await eventually(delivered, what="the delivery to the approved address")
                assert len(approved.requests) == 1
                assert approved.requests[0].headers.get("host") == f"localhost:{elsewhere.port}"
                assert elsewhere.requests == []


async def test_counts_and_alert_state_survive_a_restart(settings):
    """Counts come back from the changelog; a re-sent post is not counted twice;
    a firing alert does not fire again after the restart."""
    with WebhookReceiver() as rx:
        s = alerts_settings(settings, rules=[count_rule("r", threshold=3, window="60s")],
                            webhooks=[webhook("hook", rx.url)])
        boot, posts_topic = s.kafka.bootstrap_servers, s.kafka.topics.posts_classified
        await early_in_window(timedelta(seconds=60), need=timedelta(seconds=45))
        t0 = utcnow()
        window = window_for(t0, timedelta(seconds=60))
        first = [classified("Acme", created_at=t0) for _ in range(2)]
        async with running_alerts(s) as svc:
            produce(boot, posts_topic, first)
            await eventually(lambda: _acme(svc, window) == 2, what="two posts counted")

        async with running_alerts(s) as svc:
            assert _acme(svc, window) == 2  # recovered from the changelog
            produce(boot, posts_topic, [first[0]])  # the same post again
            before = svc.engine.last_pass
            await eventually(lambda: svc.engine.last_pass and before != svc.engine.last_pass
                             and _acme(svc, window) == 2, what="an evaluation pass after the duplicate")
            assert read_events(boot, s.kafka.topics.alerts_events) == []
            produce(boot, posts_topic, [classified("Acme", created_at=t0)])
            events = await eventually(lambda: read_events(boot, s.kafka.topics.alerts_events),
                                      what="the alert to fire")
            assert [(e.state, e.count) for e in events] == [(AlertState.firing, 3)]

        async with running_alerts(s) as svc:
            produce(boot, posts_topic, [classified("Acme", created_at=t0)])
            await eventually(lambda: _acme(svc, window) == 4, what="a fourth post counted")
            before = svc.engine.last_pass
            await eventually(lambda: svc.engine.last_pass and before != svc.engine.last_pass,
                             what="an evaluation pass")
            # Still firing from before the restart: no second firing event.
            states = [e.state for e in read_events(boot, s.kafka.topics.alerts_events)]
            assert states.count(AlertState.firing) == 1


async def test_a_post_re_sent_with_a_later_fetch_time_is_counted_once(settings):
    """A post without created_at counts at its fetched_at; ingest's retry after a produce
    timeout carries a later one, in another bucket of the same window: counted once."""
    from kafka import KafkaProducer

    s = alerts_settings(settings)  # 1 s buckets
    boot, posts_topic = s.kafka.bootstrap_servers, s.kafka.topics.posts_classified
    t0 = utcnow() - timedelta(seconds=10)
    first = classified("Acme").model_copy(update={"created_at": None, "fetched_at": t0})
    retry = first.model_copy(update={"fetched_at": t0 + timedelta(seconds=3)})
    marker = classified("Acme").model_copy(update={"created_at": None, "fetched_at": t0 + timedelta(seconds=6)})
    span = window_for(t0, timedelta(seconds=1)).start, t0 + timedelta(seconds=9)
    async with running_alerts(s) as svc:
        producer = KafkaProducer(bootstrap_servers=boot, acks="all")
        try:
            # All under the first post's key: one partition, so once the marker is counted
            # the retry before it has been read too.
            for p in (first, retry, marker):
                producer.send(posts_topic, key=first.id.encode(), value=p.to_bytes())
            producer.flush(timeout=30)
        finally:
            producer.close()
        marker_bucket = window_for(marker.fetched_at, timedelta(seconds=1))
        await eventually(lambda: _acme(svc, marker_bucket) == 1, what="the marker post counted")
        assert _acme(svc, window_for(retry.fetched_at, timedelta(seconds=1))) == 0
        counts = svc.counter.counts.cells("Acme", *span)
        assert counts[("Acme", "*", "negative", "*")] == 2  # the post and the marker


def _acme(svc, window) -> int:
    cells = svc.counter.counts.cells("Acme", window.start, window.end)
    return cells.get(("Acme", "*", "negative", "*"), 0)


async def test_spike_against_a_quiet_baseline_fires(settings):
    """The baseline is read from the trailing windows (those since counting began)."""
    window = timedelta(seconds=4)
    spike = {"name": "spike", "org": "*", "window": "4s", "cooldown": "1h", "notify": [],
             "condition": {"type": "spike", "factor": 3, "baseline_windows": 3, "min_volume": 3}}
    s = alerts_settings(settings, rules=[spike])
    boot = s.kafka.bootstrap_servers
    async with running_alerts(s) as svc:
        since = await svc.store.counting_since(utcnow())
        # Two whole quiet windows after counting began: the minimum baseline.
        await eventually(lambda: utcnow() >= window_for(since, window).end + 2 * window, timeout=30,
                         what="two quiet windows")
        await early_in_window(window, need=timedelta(seconds=3))
        produce(boot, s.kafka.topics.posts_classified, [classified("Initech") for _ in range(3)])
        events = await eventually(lambda: read_events(boot, s.kafka.topics.alerts_events), what="the spike")
        first = events[0]
        assert (first.rule, first.org, first.state, first.count) == ("spike", "Initech", AlertState.firing, 3)
        assert first.baseline == 0.0 and first.threshold == 0.0


async def test_spike_against_a_busy_baseline_needs_factor_times_its_mean(settings):
    """Two mentions in each of three trailing windows: a baseline mean of 2, so with
    factor 3 the spike needs 6 in the current window: 5 do not fire, the 6th does."""
    window = timedelta(seconds=6)
    spike = {"name": "spike", "org": "*", "window": "6s", "cooldown": "1h", "notify": [],
             "condition": {"type": "spike", "factor": 3, "baseline_windows": 3, "min_volume": 3}}
    s = alerts_settings(settings, rules=[spike])
    boot, topic = s.kafka.bootstrap_servers, s.kafka.topics.posts_classified

    def initech(svc, w) -> int:
        return svc.counter.counts.cells("Initech", w.start, w.end).get(("Initech", "*", "negative", "*"), 0)

    async with running_alerts(s) as svc:
        since = await svc.store.counting_since(utcnow())
        await eventually(lambda: utcnow() >= window_for(since, window).end, timeout=30, what="a whole window")
        for _ in range(3):  # the baseline, window by window, each post dated inside its window
            await early_in_window(window, need=timedelta(seconds=3))
            w = window_for(utcnow(), window)
            produce(boot, topic, [classified("Initech", created_at=w.start + timedelta(seconds=1)) for _ in range(2)])
            await eventually(lambda: initech(svc, w) == 2, what="the baseline window's two mentions")
            await eventually(lambda: utcnow() >= w.end, timeout=30, what="the window to end")
        await early_in_window(window, need=timedelta(seconds=5))
        current = window_for(utcnow(), window)
        produce(boot, topic, [classified("Initech") for _ in range(5)])
        await eventually(lambda: initech(svc, current) == 5, what="five mentions counted")
        counted_at = utcnow()
        await eventually(lambda: svc.engine.last_pass is not None and svc.engine.last_pass > counted_at,
                         what="an evaluation pass after the five were counted")
        assert read_events(boot, topic=s.kafka.topics.alerts_events) == []  # 5 < 3 x 2
        produce(boot, topic, [classified("Initech")])
        events = await eventually(lambda: read_events(boot, s.kafka.topics.alerts_events), what="the spike")
        first = events[0]
        assert (first.rule, first.org, first.state, first.count) == ("spike", "Initech", AlertState.firing, 6)
        assert first.baseline == 2.0 and first.threshold == 6.0


async def test_formats_reach_their_receivers_signed(settings, monkeypatch):
    secret = generate_secret()
    monkeypatch.setenv(SECRET_ENV, secret)
    with WebhookReceiver(secrets=secret) as rx:
        base = f"http://127.0.0.1:{rx.port}"
        hooks = [webhook(f"{fmt}-hook", f"{base}/{fmt}", secret_env=SECRET_ENV, format=fmt)
                 for fmt in ("json", "slack", "teams", "alertmanager")]
        s = alerts_settings(settings, webhooks=hooks,
                            rules=[count_rule("r", notify=[h["name"] for h in hooks])])
        async with running_alerts(s):
            await breach(s)
            await eventually(lambda: {q.path for q in rx.ok} >= {"/json", "/slack", "/teams", "/alertmanager"},
                             what="the alert in every format")
        first = {q.path: q for q in reversed(rx.ok)}
        assert all(q.verified for q in rx.requests)
        assert len({q.webhook_id for q in first.values()}) == 1  # one event, the same id to every endpoint
        assert first["/json"].json["type"] == "alert.firing"
        slack = first["/slack"].json
        assert slack["text"].startswith("[Firing] r: Acme") and slack["blocks"][0]["type"] == "section"
        teams = first["/teams"].json
        assert teams["type"] == "message"
        assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        am = first["/alertmanager"].json
        assert am["version"] == "4" and am["status"] == "firing"
        assert am["alerts"][0]["labels"]["alertname"] == "r" and am["receiver"] == "alertmanager-hook"


async def test_a_receiver_too_slow_to_answer_times_out_and_gets_the_same_id_again(settings):
    with WebhookReceiver() as rx:
        rx.hold()
        s = alerts_settings(settings, rules=[count_rule("r")], webhooks=[webhook("hook", rx.url, timeout="1s")],
                            retry_schedule=["0s", "1s", "1s", "1s", "1s"])
        async with running_alerts(s) as svc, api(svc) as client:
            await breach(s)

            async def timed_out():
                d = await firing_delivery(client, "r", "Acme")
                return d if d and d["attempts"] and d["attempts"][0]["outcome"] == "retry" else None

            record = await eventually(timed_out, what="a timed-out attempt")
            assert "Timeout" in record["attempts"][0]["error"]
            rx.release()

            async def delivered():
                d = await firing_delivery(client, "r", "Acme")
                return d if d["status"] == "delivered" else None

            await eventually(delivered, what="delivery once the receiver answers")
            assert {q.webhook_id for q in rx.requests} == {record["event_id"]}
            assert len(rx.requests) >= 2


@pytest.mark.parametrize("late_fire", ["5m", "0s"])
async def test_burst_counted_just_after_its_window_closed(settings, late_fire):
    """Posts written in the last seconds of a window are often counted after it closed;
    within ``alerts.late_fire`` that window still fires (0s: only the current one is judged)."""
    s = alerts_settings(settings, rules=[count_rule("late-burst", threshold=3, window="20s", notify=[])],
                        late_fire=late_fire)
    boot, topic = s.kafka.bootstrap_servers, s.kafka.topics.alerts_events
    async with running_alerts(s) as svc:
        await early_in_window(WINDOW, need=timedelta(seconds=12))
        current = window_for(utcnow(), WINDOW)
        written = current.start - timedelta(seconds=2)  # in the window that just closed
        produce(boot, s.kafka.topics.posts_classified,
                [classified("Acme", created_at=written) for _ in range(3)])
        if late_fire == "0s":
            closed = window_for(written, WINDOW)
            await eventually(lambda: _acme(svc, closed) == 3, what="the burst counted")
            counted_at = utcnow()
            await eventually(lambda: svc.engine.last_pass and svc.engine.last_pass > counted_at,
                             what="an evaluation pass after counting")
            assert read_events(boot, topic) == []
            return
        events = await eventually(lambda: read_events(boot, topic), what="the late window to fire")
        first = events[0]
        assert (first.rule, first.org, first.state, first.count) == ("late-burst", "Acme", AlertState.firing, 3)
        assert first.window_start == current.start - WINDOW and first.window_end == current.start
