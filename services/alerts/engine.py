"""Rule evaluation wired to the counts, the alert state in Redis and the outbox.

Each (rule, org) is judged by :func:`rules.evaluate` when a mention of the
organization was counted and, for every rule and organization, every
``alerts.evaluate_interval`` (so an alert resolves when posts stop coming).

With several replicas, each judges only the organizations it owns: those of
its assigned mentions partitions (:mod:`.ownership`), whose counts it holds.
An ``org: "*"`` rule is so judged for every organization, each by its owner.
After a rebalance the new owner finds the alert state in Redis (a firing
alert stays firing, with its alert id) and the counts restored from the
changelog. Every state write is a compare-and-set on the version the decision
was made on (:mod:`.state_script`), so a replica that has not yet noticed it
lost an organization cannot fire it a second time or lose the owner's update.

A decision that emits goes through the outbox in three steps:

1. the new state and the event are written to Redis together (``pending``);
2. the event is published to ``alerts.events`` and acknowledged by Kafka;
3. ``pending`` is cleared.

A crash between 1 and 3 leaves ``pending`` set, and the next evaluation pass
publishes that same event (same ``event_id``) again before deciding anything
new: nothing is lost, and the duplicate is absorbed downstream by its id.
Nothing is delivered before step 2, since delivery reads the topic.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Callable

from lyssna.common.config import RuleConfig, Settings, SpikeCondition
from lyssna.common.contracts import AlertEvent, ClassifiedPost, SamplePost, utcnow

from . import rules as R
from .counts import CountBuckets
from .metrics import AlertsMetrics
from .outbox import AlertEventPublisher
from .ownership import Ownership
from .ruleset import merge
from .store import AlertsStore, StoredAlert
from .windows import Window, trailing_windows, window_for

log = logging.getLogger("lyssna.alerts.engine")


def pick_samples(rule: RuleConfig, window: Window, posts: list[ClassifiedPost], n: int) -> list[SamplePost]:
    """Up to ``n`` of the newest posts the rule measures in the window, links first."""
    fitting = [p for p in posts if window.contains(p.event_time) and R.matches(rule, p)]
    fitting.sort(key=lambda p: (p.url is not None, p.event_time), reverse=True)
    return [SamplePost(id=p.id, url=p.url, text=p.text) for p in fitting[:n]]


class DirtyOrgs:
    """Organizations counted since the engine's last pass, and a wake-up for it.

    Its own object so the counter (which fills it) and the engine (which drains
    it) can be built in either order: neither needs the other to exist.
    """

    def __init__(self) -> None:
        self._orgs: set[str] = set()
        self.wake = asyncio.Event()

    def mark(self, org: str) -> None:
        self._orgs.add(org)
        self.wake.set()

    def take(self) -> set[str]:
        orgs, self._orgs = self._orgs, set()
        return orgs


class Engine:
    def __init__(self, settings: Settings, store: AlertsStore, counts: CountBuckets, publisher: AlertEventPublisher,
                 metrics: AlertsMetrics, *, ready: Callable[[], bool], clock: Callable[[], datetime] = utcnow,
                 dirty: DirtyOrgs | None = None, ownership: Callable[[], Ownership] | None = None):
        self.settings = settings
        self.store = store
        self.counts = counts
        self.publisher = publisher
        self.metrics = metrics
        self.ready = ready
        self.clock = clock
        self.dirty = dirty or DirtyOrgs()
        # None: a single engine that owns every organization (tests, `lyssna` tools).
        self.ownership = ownership
        self._owned: Ownership | None = None
        self._warned: set[str] = set()
        self.last_pass: datetime | None = None

    async def run(self) -> None:
        interval = self.settings.alerts.evaluate_interval.total_seconds()
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            timeout = max(0.0, next_full - loop.time())
            try:
                await asyncio.wait_for(self.dirty.wake.wait(), timeout=timeout)
            except TimeoutError:
                pass
            self.dirty.wake.clear()
            full = loop.time() >= next_full
            if not self.ready():
                await asyncio.sleep(0.2)
                continue
            orgs = self.dirty.take()
            if full:
                orgs = None
            try:
                await self.evaluate(orgs)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis or Kafka away: the next pass tries again; dirty orgs are
                # covered by the next full pass.
                log.exception("evaluation pass failed")
                await asyncio.sleep(min(interval, 1.0))
            if full:
                next_full = loop.time() + interval

    def _owns(self) -> Callable[[str], bool]:
        if self.ownership is None:
            return lambda org: True
        owned = self.ownership()
        if owned != self._owned:
            log.info("judging the organizations of mentions partitions %s", owned.describe(),
                     extra={"partitions": sorted(owned.owned)})
            self._owned = owned
        return owned.owns

    async def evaluate(self, only_orgs: set[str] | None = None) -> list[AlertEvent]:
        """One pass: republish pending outbox events, then judge every rule for
        ``only_orgs`` (all organizations when None), each only for the organizations
        this replica owns. Returns the events emitted."""
        owns = self._owns()
        stored = {k: a for k, a in (await self.store.alerts()).items() if owns(a.org)}
        pending = [a for a in stored.values() if a.pending]
        for alert in pending:
            await self._publish_pending(alert)
        if pending:
            stored = {k: a for k, a in (await self.store.alerts()).items() if owns(a.org)}
        rule_list, problems = merge(self.settings, await self.store.api_rules())
        for p in problems:
            if p not in self._warned:
                self._warned.add(p)
                log.warning(p)
        now = self.clock()
        since = await self.store.counting_since(now)
        earliest = self.counts.earliest()
        if earliest is not None and earliest < since:
            since = earliest
        counted = self.counts.orgs()
        emitted = []
        for rule in rule_list:
            firing = [org for (name, org), a in stored.items() if name == rule.name and a.rule_state.firing]
            for org in R.evaluation_orgs(rule, counted, firing):
                if (only_orgs is not None and org not in only_orgs) or not owns(org):
                    continue
                prev = stored.get((rule.name, org))
                if prev is not None and prev.pending:
                    continue  # another replica is publishing its event; judged on the next pass
                event = await self._judge(rule, org, prev, now, since)
                if event is not None:
                    emitted.append(event)
        self.last_pass = now
        return emitted

    async def _judge(self, rule: RuleConfig, org: str, prev: StoredAlert | None, now: datetime,
                     since: datetime) -> AlertEvent | None:
        state = prev.rule_state if prev else None
        window = window_for(now, rule.window)
        decision, current = self._decide(rule, org, window, state, now, since)
        late = self.settings.alerts.late_fire
        if not decision.emits and not (state and state.firing) and now - window.start < late:
            # A burst just before the boundary is counted just after it; the window it
            # belongs to has closed but may still fire.
            previous = Window(window.start - rule.window, window.start)
            late_decision, late_current = self._decide(rule, org, previous, state, now, since, late)
            if late_decision.emits:
                decision, current, window = late_decision, late_current, previous
        if not decision.emits:
            return None
        samples: list[SamplePost] = []
        if decision.action is R.Action.fire and self.settings.alerts.samples_per_alert:
            samples = pick_samples(rule, window, await self.store.recent_samples(org),
                                   self.settings.alerts.samples_per_alert)
        event = R.make_event(rule, org, decision, window=window, current=current, samples=samples)
        if not await self.store.save_decision(rule.name, org, decision.state, event,
                                              expected_version=prev.version if prev else 0):
            log.info("alert state changed by another replica; judged again on the next pass",
                     extra={"rule": rule.name, "org": org})
            return None
        await self.publisher.publish(event)
        await self.store.clear_pending(rule.name, org, event.event_id)
        self.metrics.events.labels(rule.name, event.state.value).inc()
        log.info("alert %s", event.state.value, extra={
            "rule": rule.name, "org": org, "alert_id": event.alert_id, "event_id": event.event_id,
            "count": event.count, "reason": decision.reason})
        return event

    def _decide(self, rule: RuleConfig, org: str, window: Window, state: R.RuleState | None, now: datetime,
                since: datetime, late: timedelta = timedelta(0)) -> tuple[R.Decision, R.WindowCounts]:
        scored = rule.min_score is not None  # its counts come from the cells with score levels
        current = R.counts_for(rule, org, self.counts.cells(org, window.start, window.end, scored),
                               self.counts.distinct_authors(org, window.start, window.end,
                                                            R.measured_cells(rule, org)))
        baseline = []
        if isinstance(rule.condition, SpikeCondition):
            for w in trailing_windows(window.start, rule.window, rule.condition.baseline_windows):
                if w.start >= since:
                    baseline.append(R.counts_for(rule, org, self.counts.cells(org, w.start, w.end, scored)))
        decision = R.evaluate(rule, org, window=window, current=current, baseline=baseline,
                              state=state, now=now, late=late)
        return decision, current

    async def _publish_pending(self, alert: StoredAlert) -> None:
        event = alert.pending_event
        await self.publisher.publish(event)
        await self.store.clear_pending(alert.rule, alert.org, event.event_id)
        self.metrics.events.labels(alert.rule, event.state.value).inc()
        log.info("republished pending outbox event", extra={"rule": alert.rule, "org": alert.org,
                                                           "event_id": event.event_id})

