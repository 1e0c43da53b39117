"""Two alerts replicas racing on one alert's state in the same real Redis.

During a rebalance two replicas can judge the same organization for a
moment (the new owner has restored the counts, the old one has not yet
noticed it lost them). Each decides on the state it read; without a
compare-and-set on that state's version both write, both publish, and one
overwrites the other's ``pending`` outbox event. Here the race is made on
purpose, many times: the two engines' clocks sit on either side of a window
boundary, so the two "fire" decisions are different alerts (different alert
ids), and they are run side by side on every round.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis

from lyssna.alerts.counts import CountBuckets
from lyssna.alerts.engine import Engine
from lyssna.alerts.metrics import AlertsMetrics
from lyssna.alerts.rules import RuleState
from lyssna.alerts.store import AlertsStore
from lyssna.common.contracts import AlertEvent, AlertState
from tests.helpers.alerts_harness import RecordingPublisher, alerts_settings, classified, count_rule, read_events

pytestmark = pytest.mark.integration

ROUNDS = 200
RULE = "race"
ORG = "Acme"
BLOCK = timedelta(minutes=4)  # one round's stretch of time: its own windows, past the cooldown


def _stores(settings) -> tuple[Redis, Redis, AlertsStore, AlertsStore]:
    r1, r2 = Redis.from_url(settings.redis.url), Redis.from_url(settings.redis.url)
    return r1, r2, AlertsStore(r1, settings.redis.key_prefix), AlertsStore(r2, settings.redis.key_prefix)


async def test_two_replicas_racing_fire_once_per_state_change_and_lose_no_update(settings):
    s = alerts_settings(settings, rules=[count_rule(RULE, threshold=1, window="1m", cooldown="1m", notify=[])],
                        samples_per_alert=0)
    r1, r2, store_a, store_b = _stores(s)
    pub = RecordingPublisher(s)
    sent = pub.sent
    await pub.start()
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - BLOCK * ROUNDS
    clocks = {"a": t0, "b": t0}
    # Both replicas hold the counts (the moment of a handover when both think they own the org).
    tables: list[dict] = [{}, {}]
    buckets = [CountBuckets(t, s.alerts.bucket, timedelta(days=30)) for t in tables]
    engines = [Engine(s, store, counts, pub, AlertsMetrics(), ready=lambda: True, clock=lambda k=k: clocks[k])
               for store, counts, k in ((store_a, buckets[0], "a"), (store_b, buckets[1], "b"))]
    rng = random.Random(13)

    async def judged_by(engine: Engine) -> None:
        await asyncio.sleep(rng.uniform(0, 0.002))  # vary the interleaving from round to round
        await engine.evaluate()

    try:
        for r in range(ROUNDS):
            start = t0 + BLOCK * r
            boundary = start + timedelta(minutes=1)
            if r % 2 == 0:  # a breach in both windows: each replica would fire its own window's alert
                for counts in buckets:
                    for ts in (boundary - timedelta(seconds=5), boundary + timedelta(milliseconds=500)):
                        counts.add(ORG, classified(ORG, created_at=ts), now=ts)
            clocks["a"], clocks["b"] = boundary - timedelta(seconds=1), boundary + timedelta(seconds=1)
            before = len(sent)
            await asyncio.gather(*(judged_by(e) for e in engines))

            new = {e.event_id: e for e in sent[before:]}
            want = AlertState.firing if r % 2 == 0 else AlertState.resolved
            assert [e.state for e in new.values()] == [want], f"round {r}: {list(new.values())}"
            stored = (await store_a.alerts())[(RULE, ORG)]
            state = RuleState.from_dict(stored.state)
            # No lost update: the state is the one whose event was published, fully settled.
            assert stored.pending is None, f"round {r}: pending left behind"
            assert state.seq == r + 1 and state.firing == (r % 2 == 0), f"round {r}: {state}"
            [event] = new.values()
            assert state.alert_id == event.alert_id
            active = [a["alert_id"] for a in await store_a.active_alerts()]
            assert active == ([event.alert_id] if r % 2 == 0 else []), f"round {r}: active {active}"

        # What reached Kafka: one event id per state change, a firing and its resolution sharing the alert id.
        events = read_events(s.kafka.bootstrap_servers, s.kafka.topics.alerts_events)
        by_id = {e.event_id: e for e in events}
        assert len(by_id) == ROUNDS
        firing = [e for e in by_id.values() if e.state is AlertState.firing]
        resolved = [e for e in by_id.values() if e.state is AlertState.resolved]
        assert sorted(e.alert_id for e in firing) == sorted(e.alert_id for e in resolved)
        assert len({e.alert_id for e in firing}) == ROUNDS // 2
    finally:
        await pub.stop()
        await r1.aclose()
        await r2.aclose()


async def test_clearing_pending_never_overwrites_a_concurrent_decision(settings):
    """The outbox step "clear pending" and the next decision race, many times: a decision
    that was accepted is never lost, and one that was refused was told so."""
    r1, r2, store_a, store_b = _stores(settings)
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def event(seq: int) -> tuple[RuleState, AlertEvent]:
        state = RuleState(firing=seq % 2 == 1, alert_id=f"alr_{seq}", fired_at=t, window_start=t, seq=seq)
        ev = AlertEvent(event_id=f"evt_{seq}", alert_id=f"alr_{seq}",
                        state=AlertState.firing if state.firing else AlertState.resolved, rule=RULE, org=ORG,
                        window_start=t, window_end=t + timedelta(minutes=1), count=seq, notify=[], occurred_at=t)
        return state, ev

    try:
        state, ev = event(1)
        assert await store_a.save_decision(RULE, ORG, state, ev, expected_version=0)
        accepted = refused = 0
        for seq in range(2, ROUNDS + 2):
            current = await store_a.get_alert(RULE, ORG)
            previous = current.pending_event
            state, ev = event(seq)
            # Replica A has published the previous event and clears it while replica B,
            # having read the same state, writes its next decision.
            _, ok = await asyncio.gather(store_a.clear_pending(RULE, ORG, previous.event_id),
                                         store_b.save_decision(RULE, ORG, state, ev,
                                                               expected_version=current.version))
            after = await store_a.get_alert(RULE, ORG)
            if ok:
                accepted += 1
                assert after.pending_event == ev, f"seq {seq}: accepted decision lost"
                assert RuleState.from_dict(after.state).seq == seq
            else:
                refused += 1
                assert after.pending is None and RuleState.from_dict(after.state).seq == seq - 1
                # B reads again and decides on what is there now, as the engine does on its next pass.
                assert await store_b.save_decision(RULE, ORG, state, ev, expected_version=after.version)
        assert accepted + refused == ROUNDS
        # Stale decisions are refused whatever their content.
        stale, ev = event(999)
        assert not await store_b.save_decision(RULE, ORG, stale, ev, expected_version=0)
    finally:
        await r1.aclose()
        await r2.aclose()
