"""The rule engine as a pure state machine."""

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from lyssna.alerts.rules import (
    Action, RuleState, WindowCounts, alert_id, cell_keys, check_condition, counts_for,
    evaluate, evaluation_orgs, event_id, keys_for, make_event, matches,
)
from lyssna.alerts.windows import Window, window_for
from lyssna.common.config import RuleConfig
from lyssna.common.contracts import AlertEvent, ClassifiedPost, ModelInfo

UTC = timezone.utc
H = timedelta(hours=1)
M = timedelta(minutes=1)
T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
W0 = Window(T0, T0 + H)
MODEL = ModelInfo(encoder="e5", heads="h1")


def rule(condition, **kw) -> RuleConfig:
    return RuleConfig(name=kw.pop("name", "r1"), condition=condition, **kw)


def post(i=0, orgs=("Acme",), topics=("employee_satisfaction",), sentiment="negative", lang="sv", at=T0):
    return ClassifiedPost(id=f"p{i}", source="http", text=f"text {i}", url=f"https://x.example/{i}",
                          created_at=at, lang=lang, orgs=list(orgs), topics=list(topics),
                          sentiment=sentiment, model=MODEL)


COUNT3 = {"type": "count", "threshold": 3}


# ---------------------------------------------------------------- matching

def test_keys_for_expands_star_to_each_mentioned_org():
    p = post(orgs=("Acme", "Globex", "Acme"))
    assert keys_for(rule(COUNT3), p) == ["Acme", "Globex"]
    assert keys_for(rule(COUNT3, org="Globex"), p) == ["Globex"]
    assert keys_for(rule(COUNT3, org="Initech"), p) == []
    assert keys_for(rule(COUNT3), post(orgs=())) == []


def test_filters():
    p = post(topics=("recruitment", "engagement"), sentiment="positive", lang="en-GB")
    assert matches(rule(COUNT3, topic="engagement"), p)
    assert not matches(rule(COUNT3, topic="employee_satisfaction"), p)
    assert matches(rule(COUNT3, lang="EN"), p) and not matches(rule(COUNT3, lang="sv"), p)
    assert matches(rule(COUNT3, sentiment="positive"), p)
    # Sentiment narrows what is measured, not which org window the post is in.
    assert not matches(rule(COUNT3, sentiment="negative"), p)
    assert keys_for(rule(COUNT3, sentiment="negative"), p) == ["Acme"]


def test_ratio_matches_its_condition_sentiment():
    r = rule({"type": "ratio", "sentiment": "negative", "threshold": 0.5})
    assert matches(r, post(sentiment="negative")) and not matches(r, post(sentiment="positive"))


POSTS = st.lists(st.builds(
    post, i=st.integers(0, 10**6),
    orgs=st.lists(st.sampled_from(["Acme", "Globex", "Initech"]), max_size=3).map(tuple),
    topics=st.lists(st.sampled_from(["recruitment", "engagement", "employee_satisfaction"]), max_size=3).map(tuple),
    sentiment=st.sampled_from(["positive", "neutral", "negative"]),
    lang=st.sampled_from(["sv", "en", "en-US", "de"])), max_size=40)
RULES = st.builds(
    rule, st.sampled_from([COUNT3, {"type": "ratio", "sentiment": "negative", "threshold": 0.4, "min_volume": 2},
                           {"type": "spike", "factor": 2.0}]),
    org=st.sampled_from(["*", "Acme", "Globex"]), topic=st.sampled_from([None, "recruitment", "engagement"]),
    sentiment=st.sampled_from([None, "negative", "positive"]), lang=st.sampled_from([None, "en", "sv"]))


def count_posts(rule: RuleConfig, org: str, posts) -> WindowCounts:
    """What counts_for must answer, counted straight from the posts: the oracle."""
    total, matching, by_sentiment = 0, 0, {}
    for p in posts:
        if org not in keys_for(rule, p):
            continue
        total += 1
        by_sentiment[p.sentiment.value] = by_sentiment.get(p.sentiment.value, 0) + 1
        matching += matches(rule, p)
    return WindowCounts(total, matching, by_sentiment)


@settings(max_examples=150, deadline=None)
@given(posts=POSTS, r=RULES, org=st.sampled_from(["Acme", "Globex", "Initech"]))
def test_cells_answer_any_rule_like_counting_the_posts(posts, r, org):
    cells = Counter(k for p in posts for k in cell_keys(p))
    assert counts_for(r, org, cells) == count_posts(r, org, posts)


# ---------------------------------------------------------------- conditions

def test_count_condition_edge():
    r = rule(COUNT3)
    assert not check_condition(r, WindowCounts(5, 2)).met
    res = check_condition(r, WindowCounts(5, 3))
    assert res.met and (res.value, res.threshold, res.baseline) == (3.0, 3.0, None)


def test_ratio_needs_min_volume():
    r = rule({"type": "ratio", "sentiment": "negative", "threshold": 0.5, "min_volume": 10})
    low = check_condition(r, WindowCounts(9, 9, {"negative": 9}))
    assert not low.met and "min_volume" in low.reason and low.value == 1.0
    assert check_condition(r, WindowCounts(10, 5, {"negative": 5, "positive": 5})).met
    assert not check_condition(r, WindowCounts(10, 4, {"negative": 4, "positive": 6})).met
    empty = check_condition(r, WindowCounts())
    assert not empty.met and empty.value is None


def spike(**kw):
    return rule({"type": "spike", **kw})


def hist(*ns):
    return [WindowCounts(n, n) for n in ns]


def test_spike_factor():
    r = spike(factor=3.0, baseline_windows=4, min_volume=5)
    res = check_condition(r, WindowCounts(12, 12), hist(100, 4, 4, 4, 4))  # only the last 4 count
    assert res.met and res.baseline == 4.0 and res.threshold == 12.0
    assert not check_condition(r, WindowCounts(11, 11), hist(4, 4, 4, 4)).met


def test_spike_with_zero_baseline_fires_at_min_volume():
    r = spike(factor=2.0, min_volume=5)
    assert check_condition(r, WindowCounts(5, 5), hist(0, 0, 0)).met
    below = check_condition(r, WindowCounts(4, 4), hist(0, 0, 0))
    assert not below.met and "min_volume" in below.reason


@pytest.mark.parametrize("baseline", [[], hist(3)])
def test_spike_with_too_short_baseline_never_fires(baseline):
    for cond in ({"factor": 2.0}, {"z_score": 2.0}):
        res = check_condition(spike(**cond, min_volume=1), WindowCounts(1000, 1000), baseline)
        assert not res.met and "baseline has" in res.reason


def test_z_score_with_zero_variance_uses_count_noise_floor():
    r = spike(z_score=3.0, min_volume=1)
    flat = hist(100, 100, 100, 100)
    # sigma = sqrt(100) = 10: 129 is 2.9 sigma, 130 is 3.
    assert not check_condition(r, WindowCounts(129, 129), flat).met
    res = check_condition(r, WindowCounts(130, 130), flat)
    assert res.met and res.value == pytest.approx(3.0) and res.baseline == 100.0
    # All-zero history: sigma floors at 1, so 3 mentions are 3 sigma, and no division by zero.
    assert check_condition(r, WindowCounts(3, 3), hist(0, 0)).met
    assert not check_condition(r, WindowCounts(0, 0), hist(0, 0)).met


def test_z_score_uses_real_variance_when_larger():
    r = spike(z_score=2.0, min_volume=1)
    h = hist(0, 20, 0, 20)  # mean 10, sample stdev ~11.5 > sqrt(10)
    assert not check_condition(r, WindowCounts(30, 30), h).met
    assert check_condition(r, WindowCounts(34, 34), h).met


def test_z_score_respects_min_volume():
    r = spike(z_score=1.0, min_volume=5)
    assert not check_condition(r, WindowCounts(4, 4), hist(0, 0, 0)).met


# ---------------------------------------------------------------- state machine

R = rule(COUNT3, cooldown="2h")


def step(state, n, now, window=None, r=R, org="Acme"):
    return evaluate(r, org, window=window or window_for(now, r.window), current=WindowCounts(n, n),
                    state=state, now=now)


def test_fires_once_then_stays_then_resolves_once():
    d1 = step(None, 3, T0 + 10 * M)
    assert d1.action is Action.fire and d1.state.firing and d1.state.fired_at == T0 + 10 * M
    assert d1.alert_id == alert_id("r1", "Acme", T0, 0)
    assert d1.event_id == event_id(d1.alert_id, "firing", 1)
    d2 = step(d1.state, 7, T0 + 20 * M)
    assert d2.action is Action.stay and d2.state == d1.state
    # The window rolls over: zero matching mentions in the new one.
    d3 = step(d2.state, 0, T0 + H)
    assert d3.action is Action.resolve and d3.alert_id == d1.alert_id
    assert d3.event_id == event_id(d1.alert_id, "resolved", 2) != d1.event_id
    assert not d3.state.firing and d3.state.last_resolved_at == T0 + H
    d4 = step(d3.state, 0, T0 + H + M)
    assert d4.action is Action.stay


def test_threshold_edge_inside_the_window():
    assert step(None, 2, T0 + 59 * M).action is Action.stay
    assert step(None, 3, T0 + 59 * M + timedelta(seconds=59)).action is Action.fire


def test_cooldown_suppresses_refiring_and_expires():
    fired = step(None, 3, T0 + 10 * M)
    resolved = step(fired.state, 0, T0 + H)
    again = step(resolved.state, 5, T0 + H + 30 * M)
    assert again.action is Action.stay and "cooldown" in again.reason
    # Cooldown counts from the firing: 10:10 + 2h = 12:10.
    assert step(resolved.state, 5, T0 + 2 * H + 9 * M).action is Action.stay
    refire = step(resolved.state, 5, T0 + 2 * H + 10 * M)
    assert refire.action is Action.fire and refire.alert_id not in (fired.alert_id, None)


def test_zero_cooldown_refire_in_the_same_window_gets_new_ids():
    r = rule({"type": "ratio", "threshold": 0.5, "min_volume": 2}, cooldown="0s")
    w = W0

    def ev(state, neg, pos, now):
        return evaluate(r, "Acme", window=w, current=WindowCounts(neg + pos, neg, {"negative": neg, "positive": pos}),
                        state=state, now=now)
    a = ev(None, 2, 0, T0 + M)
    b = ev(a.state, 2, 3, T0 + 2 * M)
    c = ev(b.state, 6, 3, T0 + 3 * M)
    assert [a.action, b.action, c.action] == [Action.fire, Action.resolve, Action.fire]
    assert c.alert_id != a.alert_id and len({a.event_id, b.event_id, c.event_id}) == 3


def test_late_evaluation_of_a_closed_window_never_fires_or_resolves():
    now = T0 + H + 5 * M  # the 10:00 window is over
    late = evaluate(R, "Acme", window=W0, current=WindowCounts(50, 50), state=None, now=now)
    assert late.action is Action.stay and "not the current one" in late.reason
    firing = step(None, 3, T0 + 10 * M).state
    assert evaluate(R, "Acme", window=W0, current=WindowCounts(0, 0), state=firing, now=now).action is Action.stay
    # The window end itself already belongs to the next window.
    assert evaluate(R, "Acme", window=W0, current=WindowCounts(9, 9), now=T0 + H).action is Action.stay


LATE = 5 * M


def test_closed_window_fires_within_the_late_period():
    # Posts from 10:59 counted at 11:01: their window is closed but may still fire.
    d = evaluate(R, "Acme", window=W0, current=WindowCounts(3, 3), now=T0 + H + M, late=LATE)
    assert d.action is Action.fire and d.alert_id == alert_id("r1", "Acme", T0, 0)
    assert d.state.window_start == T0 and d.state.fired_at == T0 + H + M
    too_late = evaluate(R, "Acme", window=W0, current=WindowCounts(3, 3), now=T0 + H + LATE, late=LATE)
    assert too_late.action is Action.stay and "not the current one" in too_late.reason
    below = evaluate(R, "Acme", window=W0, current=WindowCounts(2, 2), now=T0 + H + M, late=LATE)
    assert below.action is Action.stay


def test_closed_window_never_resolves_and_fires_only_once():
    # Firing since the window before (09:00-10:00): a quiet closed 10:00 window is no reason to resolve.
    firing = step(None, 3, T0 - 30 * M).state
    d = evaluate(R, "Acme", window=W0, current=WindowCounts(0, 0), state=firing, now=T0 + H + M, late=LATE)
    assert d.action is Action.stay and d.state == firing
    # Fired late, then resolved by the current window: the closed window may not fire
    # again, however short the cooldown.
    r = rule(COUNT3, cooldown="0s")
    fired = evaluate(r, "Acme", window=W0, current=WindowCounts(3, 3), now=T0 + H + M, late=LATE)
    resolved = evaluate(r, "Acme", window=window_for(T0 + H + 2 * M, H), current=WindowCounts(0, 0),
                        state=fired.state, now=T0 + H + 2 * M)
    assert resolved.action is Action.resolve
    again = evaluate(r, "Acme", window=W0, current=WindowCounts(4, 4), state=resolved.state,
                     now=T0 + H + 3 * M, late=LATE)
    assert again.action is Action.stay and "already fired once" in again.reason


def test_late_post_counts_in_its_own_window_only():
    r = R
    now = T0 + H + 5 * M
    posts = [post(i, at=T0 + H + i * M) for i in range(2)] + [post(9, at=T0 + 30 * M)]  # last one is late
    current = window_for(now, r.window)
    in_current = [p for p in posts if current.contains(p.event_time)]
    assert len(in_current) == 2
    d = evaluate(r, "Acme", window=current, current=count_posts(r, "Acme", in_current), now=now)
    assert d.action is Action.stay


def test_spike_with_baseline_through_evaluate():
    r = spike(factor=2.0, min_volume=3, baseline_windows=3)
    d = evaluate(r, "Acme", window=W0, current=WindowCounts(10, 10), baseline=hist(4, 5, 6), now=T0 + M)
    assert d.action is Action.fire and d.baseline == 5.0 and d.threshold == 10.0 and d.value == 10.0
    short = evaluate(r, "Acme", window=W0, current=WindowCounts(10, 10), baseline=hist(1), now=T0 + M)
    assert short.action is Action.stay


def test_ids_are_deterministic_and_distinct():
    a = alert_id("r1", "Acme", T0)
    assert a == alert_id("r1", "Acme", T0.astimezone(timezone(timedelta(hours=2))))
    assert len({a, alert_id("r2", "Acme", T0), alert_id("r1", "Globex", T0), alert_id("r1", "Acme", T0 + H),
                alert_id("r1", "Acme", T0, 1)}) == 5
    assert a.startswith("alr_") and event_id(a, "firing", 1).startswith("evt_")
    assert event_id(a, "firing", 1) == event_id(a, "firing", 1) != event_id(a, "resolved", 1)


def test_same_inputs_after_a_crash_give_the_same_event():
    # The worker decided and wrote the event, then died before storing the new
    # state: re-running from the old state must repeat the same ids.
    before = step(None, 3, T0 + 10 * M).state
    resolved1 = step(before, 0, T0 + H + M)
    resolved2 = step(before, 0, T0 + H + M)
    assert resolved1 == resolved2


# Inputs for restart properties: (matching count, minutes since T0), time increasing.
STEPS = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 40)), min_size=1, max_size=40)


def run(steps, restart_every=None):
    state, now, out = None, T0, []
    for i, (n, minutes) in enumerate(steps):
        now += minutes * M
        d = step(state, n, now)
        out.append((d.action, d.alert_id if d.emits else None, d.event_id))
        state = d.state
        if restart_every and i % restart_every == 0:
            state = RuleState.from_dict(json.loads(json.dumps(state.to_dict())))
    return out, state


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, every=st.integers(1, 5))
def test_restart_from_serialised_state_gives_the_same_decisions(steps, every):
    assert run(steps) == run(steps, restart_every=every)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS)
def test_events_alternate_and_respect_cooldown(steps):
    out, _ = run(steps)
    emitted = [(i, a) for i, (a, _, _) in enumerate(out) if a is not Action.stay]
    actions = [a for _, a in emitted]
    assert actions == [Action.fire, Action.resolve] * (len(actions) // 2) + [Action.fire] * (len(actions) % 2)
    fire_times, now = [], T0
    for (_, minutes), (a, _, _) in zip(steps, out):
        now += minutes * M
        if a is Action.fire:
            fire_times.append(now)
    assert all(b - a >= R.cooldown for a, b in zip(fire_times, fire_times[1:]))
    event_ids = [e for _, _, e in out if e]
    assert len(event_ids) == len(set(event_ids))


def test_rule_state_roundtrip():
    s = RuleState(True, "alr_x", T0, None, T0, 3)
    assert RuleState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert RuleState.from_dict(None) == RuleState() == RuleState.from_dict({})
    c = WindowCounts(4, 2, {"negative": 2, "positive": 2})
    assert WindowCounts.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_evaluation_orgs():
    assert evaluation_orgs(rule(COUNT3, org="Acme"), ["Globex"]) == ["Acme"]
    assert evaluation_orgs(rule(COUNT3), ["Globex", "Acme"], ["Initech", "Acme"]) == ["Acme", "Globex", "Initech"]


def test_make_event_from_decisions():
    r = rule(COUNT3, topic="employee_satisfaction", sentiment="negative", lang="sv", notify=[])
    cur = WindowCounts(4, 3, {"negative": 3, "positive": 1})
    d = evaluate(r, "Acme", window=W0, current=cur, now=T0 + 10 * M)
    ev = make_event(r, "Acme", d, window=W0, current=cur, samples=[post(1), post(2)])
    assert isinstance(ev, AlertEvent) and ev.state == "firing"
    assert (ev.event_id, ev.alert_id, ev.rule, ev.org) == (d.event_id, d.alert_id, "r1", "Acme")
    assert (ev.topic, ev.sentiment, ev.lang) == ("employee_satisfaction", "negative", "sv")
    assert (ev.count, ev.value, ev.threshold) == (3, 3.0, 3.0)
    assert ev.window_start == T0 and ev.window_end == T0 + H and ev.occurred_at == T0 + 10 * M
    assert [s.url for s in ev.samples] == ["https://x.example/1", "https://x.example/2"]
    # Rebuilding the event from the same decision gives the same bytes (safe to re-produce).
    assert make_event(r, "Acme", d, window=W0, current=cur, samples=[post(1), post(2)]).to_bytes() == ev.to_bytes()
    stay = evaluate(r, "Acme", window=W0, current=cur, state=d.state, now=T0 + 11 * M)
    with pytest.raises(ValueError):
        make_event(r, "Acme", stay, window=W0, current=cur)


def test_hopping_window_evaluation_uses_the_latest_window():
    # With hopping windows the caller judges the latest window containing now.
    r = rule(COUNT3)
    now = T0 + 20 * M
    latest = window_for(now, H, 15 * M)
    d = evaluate(r, "Acme", window=latest, current=WindowCounts(3, 3), now=now)
    assert d.action is Action.fire and d.state.window_start == latest.start
