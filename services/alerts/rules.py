"""The rule engine: a pure state machine over window counts.

One alert lives per (rule, organization). Each evaluation takes the counts of
the current window (and, for spikes, the trailing windows), the alert's
previous :class:`RuleState` and ``now``, and returns a :class:`Decision`:
``fire``, ``resolve`` or ``stay``, plus the state to store. Nothing here reads
a clock, a table or the network, so the same inputs always give the same
decision, including after a restart that rebuilds the state from storage.

Semantics, decided here once:

- **Scope.** ``org: "*"`` evaluates every organization on its own; the
  ``topic`` and ``lang`` filters narrow which posts count at all. The rule's
  ``sentiment`` filter selects the *matching* posts. A ``ratio`` rule compares
  its condition's sentiment with every post in scope (its denominator ignores
  the rule's ``sentiment`` filter, which would make the share trivially 1).
- **count**: fires when matching posts in the window >= ``threshold``.
- **ratio**: fires when share of the condition's sentiment >= ``threshold``
  and at least ``min_volume`` posts are in scope.
- **spike**: compares the matching count with the mean of up to
  ``baseline_windows`` trailing windows (most recent last; windows with no
  posts count as zero, windows from before counting began should be left
  out). Needs at least ``MIN_BASELINE_WINDOWS`` of them and ``min_volume``
  matching posts now. ``factor``: fires when current >= factor x mean, so a
  zero baseline makes any volume >= ``min_volume`` a spike. ``z_score``:
  fires when (current - mean) / sigma >= z, where sigma is the sample
  standard deviation floored at sqrt(mean) (the Poisson noise of a count) and
  at 1, so a perfectly flat baseline does not make one extra mention
  infinitely surprising.
- **Only the current window is judged**: an evaluation of a window that has
  already ended (``now >= window.end``), e.g. after a late post, decides
  ``stay``. Late posts still count towards that window and so towards later
  baselines.
- **min_authors** (any condition): the condition holds only when the posts
  the rule measures come from at least that many distinct authors
  (pseudonyms; a post without an author counts for no one), so one person
  posting twenty times is not twenty voices.
- **min_score**: a post is in scope only when its score for the rule's
  ``topic`` is at least ``min_score``, and it is measured (``sentiment``, or
  a ratio's numerator) only when its score for that sentiment is too; a ratio
  then compares the confidently-``sentiment`` posts with every confident
  in-scope post. Scores are kept in steps of 1/``MIN_SCORE_STEPS`` (floored),
  and counted in separate cells (:func:`scored_cell_keys`). ``min_authors``
  counts the authors of the rule's cells whatever their scores.
- **Firing and resolving**: an alert fires once when the condition becomes
  true and resolves once when it becomes false; nothing is emitted while it
  stays true or stays false.
- **Cooldown**: after a firing, the same (rule, org) does not fire again until
  ``cooldown`` has passed since that firing, even if it resolved meanwhile.
- **Ids**: ``alert_id`` derives from (rule, org, window start, event sequence)
  and ``event_id`` from (alert id, state, sequence), so re-evaluating the same
  inputs after a crash produces the same ids and receivers can drop the
  duplicate by ``webhook-id``.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence

from lyssna.common.config import MIN_SCORE_STEPS, CountCondition, RatioCondition, RuleConfig, SpikeCondition
from lyssna.common.contracts import SENTIMENTS, AlertEvent, AlertState, ClassifiedPost, SamplePost, as_utc

from .windows import Window

ANY = "*"
MIN_BASELINE_WINDOWS = 2

# (org, topic or "*", sentiment, lang or "*"): the unit the agent counts in, so
# any rule, including one added later through the API, can be answered from
# the same counts.
CellKey = tuple[str, str, str, str]
# A CellKey plus the post's topic and sentiment score levels (score_level): what
# a rule with min_score is answered from. A "*" topic cell has the top level.
ScoredCellKey = tuple[str, str, str, str, int, int]


# ---------------------------------------------------------------- matching

def normalize_lang(lang: str | None) -> str | None:
    """Primary language subtag, lower case: "en-GB" and "EN" both match a rule's "en"."""
    if not lang:
        return None
    return lang.strip().lower().replace("_", "-").split("-")[0] or None


def _numerator_sentiment(rule: RuleConfig) -> str | None:
    if isinstance(rule.condition, RatioCondition):
        return rule.condition.sentiment.value
    return rule.sentiment.value if rule.sentiment else None


def score_level(score: float | None) -> int:
    """A score in whole steps of 1/MIN_SCORE_STEPS, floored (0.749 -> 14 of 20): a
    level >= ``score_level(min_score)`` means the score is >= min_score. Scores come
    rounded to 4 decimals, so rounding first keeps 0.7 from flooring to 13."""
    return int(round((score or 0.0) * 10_000)) * MIN_SCORE_STEPS // 10_000


def _confident(rule: RuleConfig, level: int) -> bool:
    return rule.min_score is None or level >= score_level(rule.min_score)


def _in_scope_ignoring_org(rule: RuleConfig, post: ClassifiedPost) -> bool:
    if rule.topic is not None and rule.topic not in post.topics:
        return False
    if rule.topic is not None and not _confident(rule, score_level(post.topic_scores.get(rule.topic))):
        return False
    if rule.lang is not None and normalize_lang(post.lang) != normalize_lang(rule.lang):
        return False
    return True


def keys_for(rule: RuleConfig, post: ClassifiedPost) -> list[str]:
    """The organizations whose window counts for ``rule`` this post is part of
    (in scope: org, topic and language filters; sentiment does not matter here,
    since a ratio's denominator counts every sentiment)."""
    if not _in_scope_ignoring_org(rule, post):
        return []
    orgs = list(dict.fromkeys(post.orgs))
    if rule.org == ANY:
        return orgs
    return [rule.org] if rule.org in orgs else []


def matches(rule: RuleConfig, post: ClassifiedPost) -> bool:
    """Whether the post counts towards what the rule measures (and is a fitting sample)."""
    if not keys_for(rule, post):
        return False
    want = _numerator_sentiment(rule)
    return want is None or (post.sentiment.value == want
                            and _confident(rule, score_level(post.sentiment_scores.get(post.sentiment))))


def cell_keys(post: ClassifiedPost) -> list[CellKey]:
    """The count cells one post increments: per org, for each of its topics and
    for "any topic", in its language and in "any language"."""
    lang = normalize_lang(post.lang) or ANY
    langs = [lang, ANY] if lang != ANY else [ANY]
    topics = [t.value for t in dict.fromkeys(post.topics)] + [ANY]
    return [(org, topic, post.sentiment.value, la)
            for org in dict.fromkeys(post.orgs) for topic in topics for la in langs]


def scored_cell_keys(post: ClassifiedPost) -> list[ScoredCellKey]:
    """:func:`cell_keys` with the post's score levels for the cell's topic and its sentiment."""
    top = score_level(1.0)
    sentiment = score_level(post.sentiment_scores.get(post.sentiment))
    return [(*cell, top if cell[1] == ANY else score_level(post.topic_scores.get(cell[1])), sentiment)
            for cell in cell_keys(post)]


# ---------------------------------------------------------------- counts

@dataclass(frozen=True)
class WindowCounts:
    """What a rule needs to know about one window for one organization.

    ``total``: posts in scope; ``matching``: those the rule measures;
    ``by_sentiment``: posts in scope per sentiment; ``authors``: distinct authors
    of the matching posts (None: not known).
    """

    total: int = 0
    matching: int = 0
    by_sentiment: Mapping[str, int] = field(default_factory=dict)
    authors: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "matching": self.matching, "by_sentiment": dict(self.by_sentiment),
                "authors": self.authors}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WindowCounts":
        authors = d.get("authors")
        return cls(int(d.get("total", 0)), int(d.get("matching", 0)),
                   {str(k): int(v) for k, v in (d.get("by_sentiment") or {}).items()},
                   None if authors is None else int(authors))


def measured_cells(rule: RuleConfig, org: str) -> list[CellKey]:
    """The count cells that hold the posts ``rule`` measures for ``org``: where its
    distinct authors are counted (:meth:`CountBuckets.distinct_authors`)."""
    if rule.org != ANY and org != rule.org:
        return []
    topic = rule.topic.value if rule.topic else ANY
    lang = normalize_lang(rule.lang) or ANY
    want = _numerator_sentiment(rule)
    return [(org, topic, s, lang) for s in ([want] if want else SENTIMENTS)]


def counts_for(rule: RuleConfig, org: str, cells: Mapping[CellKey, int] | Mapping[ScoredCellKey, int],
               authors: int | None = None) -> WindowCounts:
    """A rule's view of one window, from the cells of :func:`cell_keys` (a rule with
    ``min_score``: of :func:`scored_cell_keys`); ``authors``: the distinct authors of
    its :func:`measured_cells`, when known."""
    if rule.org != ANY and org != rule.org:
        return WindowCounts(authors=None if authors is None else 0)
    topic = rule.topic.value if rule.topic else ANY
    lang = normalize_lang(rule.lang) or ANY
    if rule.min_score is not None:
        return _confident_counts(rule, org, topic, lang, cells, authors)
    by_sentiment = {}
    for (c_org, c_topic, c_sent, c_lang), n in cells.items():
        if c_org == org and c_topic == topic and c_lang == lang and n:
            by_sentiment[c_sent] = by_sentiment.get(c_sent, 0) + n
    total = sum(by_sentiment.values())
    want = _numerator_sentiment(rule)
    matching = total if want is None else by_sentiment.get(want, 0)
    return WindowCounts(total, matching, by_sentiment, authors)


def _confident_counts(rule: RuleConfig, org: str, topic: str, lang: str,
                      cells: Mapping[ScoredCellKey, int], authors: int | None) -> WindowCounts:
    """counts_for with min_score: only scored cells count, in scope when the topic level
    is high enough; the measured sentiment only when its level is too."""
    want = _numerator_sentiment(rule)
    total, by_sentiment = 0, {}
    for key, n in cells.items():
        if len(key) != 6 or not n:
            continue  # unscored cells (counted before scores were kept) cannot vouch for a score
        c_org, c_topic, c_sent, c_lang, topic_level, sentiment_level = key
        if c_org != org or c_topic != topic or c_lang != lang or not _confident(rule, topic_level):
            continue
        total += n
        if c_sent != want or _confident(rule, sentiment_level):
            by_sentiment[c_sent] = by_sentiment.get(c_sent, 0) + n
    matching = total if want is None else by_sentiment.get(want, 0)
    return WindowCounts(total, matching, by_sentiment, authors)


# ---------------------------------------------------------------- conditions

@dataclass(frozen=True)
class ConditionResult:
    met: bool
    value: float | None
    threshold: float | None
    baseline: float | None
    reason: str


def check_condition(rule: RuleConfig, current: WindowCounts,
                    baseline: Sequence[WindowCounts] = ()) -> ConditionResult:
    """Whether the rule's condition holds for these counts (no state, no time),
    ``min_authors`` included."""
    result = _check_volume(rule, current, baseline)
    if rule.min_authors is None or not result.met:
        return result
    authors = current.authors or 0  # unknown authors cannot vouch for anything
    if authors < rule.min_authors:
        return replace(result, met=False, reason=f"{result.reason}; but from {authors} distinct author(s), "
                                                 f"below min_authors {rule.min_authors}")
    return replace(result, reason=f"{result.reason}, from {authors} distinct authors")


def _check_volume(rule: RuleConfig, current: WindowCounts, baseline: Sequence[WindowCounts]) -> ConditionResult:
    cond = rule.condition
    if isinstance(cond, CountCondition):
        n = current.matching
        return ConditionResult(n >= cond.threshold, float(n), float(cond.threshold), None,
                               f"{n} matching mentions, threshold {cond.threshold}")
    if isinstance(cond, RatioCondition):
        if current.total == 0:
            return ConditionResult(False, None, cond.threshold, None, "no mentions in scope")
        share = current.by_sentiment.get(cond.sentiment.value, 0) / current.total
        if current.total < cond.min_volume:
            return ConditionResult(False, share, cond.threshold, None,
                                   f"{current.total} mentions, below min_volume {cond.min_volume}")
        return ConditionResult(share >= cond.threshold, share, cond.threshold, None,
                               f"{cond.sentiment.value} share {share:.3f}, threshold {cond.threshold}")
    if isinstance(cond, SpikeCondition):
        return _check_spike(cond, current, baseline)
    raise TypeError(f"unknown condition {type(cond).__name__}")  # pragma: no cover


def _check_spike(cond: SpikeCondition, current: WindowCounts,
                 baseline: Sequence[WindowCounts]) -> ConditionResult:
    history = [b.matching for b in baseline][-cond.baseline_windows:]
    n = current.matching
    if len(history) < MIN_BASELINE_WINDOWS:
        return ConditionResult(False, float(n), None, None,
                               f"baseline has {len(history)} window(s), needs {MIN_BASELINE_WINDOWS}")
    mean = statistics.fmean(history)
    if cond.factor is not None:
        needed = cond.factor * mean
        met = n >= cond.min_volume and n >= needed
        reason = f"{n} matching mentions against baseline {mean:.2f} x {cond.factor} = {needed:.2f}"
        result = ConditionResult(met, float(n), needed, mean, reason)
    else:
        sigma = max(statistics.stdev(history), math.sqrt(mean), 1.0)
        z = (n - mean) / sigma
        met = n >= cond.min_volume and z >= cond.z_score
        reason = f"z-score {z:.2f} (baseline {mean:.2f} ± {sigma:.2f}), threshold {cond.z_score}"
        result = ConditionResult(met, round(z, 6), cond.z_score, mean, reason)
    if n < cond.min_volume:
        return replace(result, met=False, reason=f"{n} matching mentions, below min_volume {cond.min_volume}")
    return result


# ---------------------------------------------------------------- state machine

@dataclass(frozen=True)
class RuleState:
    """What the engine remembers per (rule, org) between evaluations.

    Not the event's state (:class:`lyssna.common.contracts.AlertState`, firing
    or resolved): this is the engine's own memory that decides the next event.
    ``seq`` counts the events emitted so far; it keeps ids unique when one
    window fires twice (a short cooldown on a ratio that dips and recovers).
    """

    firing: bool = False
    alert_id: str | None = None
    fired_at: datetime | None = None
    last_resolved_at: datetime | None = None
    window_start: datetime | None = None
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        def iso(dt):
            return dt.isoformat() if dt else None
        return {"firing": self.firing, "alert_id": self.alert_id, "fired_at": iso(self.fired_at),
                "last_resolved_at": iso(self.last_resolved_at), "window_start": iso(self.window_start),
                "seq": self.seq}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "RuleState":
        if not d:
            return cls()

        def dt(v):
            if v is None or isinstance(v, datetime):
                return v
            parsed = datetime.fromisoformat(v)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return cls(bool(d.get("firing", False)), d.get("alert_id"), dt(d.get("fired_at")),
                   dt(d.get("last_resolved_at")), dt(d.get("window_start")), int(d.get("seq", 0)))


class Action(StrEnum):
    fire = "fire"
    resolve = "resolve"
    stay = "stay"


@dataclass(frozen=True)
class Decision:
    action: Action
    state: RuleState  # store this; it is the input of the next evaluation
    condition: ConditionResult | None
    reason: str
    decided_at: datetime
    alert_id: str | None = None
    event_id: str | None = None

    @property
    def emits(self) -> bool:
        return self.action is not Action.stay

    @property
    def value(self) -> float | None:
        return self.condition.value if self.condition else None

    @property
    def threshold(self) -> float | None:
        return self.condition.threshold if self.condition else None

    @property
    def baseline(self) -> float | None:
        return self.condition.baseline if self.condition else None


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def alert_id(rule_name: str, org: str, window_start: datetime, seq: int = 0) -> str:
    """Deterministic id of one alert (one firing and its resolution)."""
    return "alr_" + _digest(rule_name, org, as_utc(window_start).isoformat(), seq)


def event_id(alert_id: str, state: str, seq: int = 0) -> str:
    """Deterministic id of one state change; it becomes the ``webhook-id``."""
    return "evt_" + _digest(alert_id, str(state), seq)


def evaluate(rule: RuleConfig, org: str, *, window: Window, current: WindowCounts,
             baseline: Sequence[WindowCounts] = (), state: RuleState | None = None,
             now: datetime, late: timedelta = timedelta(0)) -> Decision:
    """Decide what happens to the (rule, org) alert given a window's counts.

    The window is normally the current one. A window that ended less than
    ``late`` before ``now`` may still fire, once, when no alert is firing: posts
    written just before its end are often counted just after it. A closed
    window never resolves an alert; the current one does that.

    ``now`` is on the same clock as the windows (event time); the engine never
    reads a clock itself.
    """
    now = as_utc(now)
    prev = state or RuleState()
    start, end = as_utc(window.start), as_utc(window.end)
    span = f"window {window.start.isoformat()}..{window.end.isoformat()}"
    if now < start or now >= end + late or (now >= end and prev.firing):
        return Decision(Action.stay, prev, None,
                        f"{span} is not the current one at {now.isoformat()}; only the current window "
                        f"is judged (or, to fire, one that closed less than {late} ago)", now)
    if now >= end and prev.window_start == start:
        return Decision(Action.stay, prev, None, f"{span} is closed and already fired once", now)
    cond = check_condition(rule, current, baseline)
    if prev.firing:
        if cond.met:
            return Decision(Action.stay, prev, cond, f"still firing: {cond.reason}", now, prev.alert_id)
        seq = prev.seq + 1
        aid = prev.alert_id or alert_id(rule.name, org, prev.window_start or window.start, prev.seq)
        new = replace(prev, firing=False, last_resolved_at=now, seq=seq, alert_id=aid)
        return Decision(Action.resolve, new, cond, f"resolved: {cond.reason}", now, aid,
                        event_id(aid, AlertState.resolved.value, seq))
    if not cond.met:
        return Decision(Action.stay, prev, cond, cond.reason, now)
    if prev.fired_at is not None and now < as_utc(prev.fired_at) + rule.cooldown:
        until = as_utc(prev.fired_at) + rule.cooldown
        return Decision(Action.stay, prev, cond,
                        f"condition met but in cooldown until {until.isoformat()}: {cond.reason}", now)
    seq = prev.seq + 1
    aid = alert_id(rule.name, org, window.start, prev.seq)
    new = RuleState(firing=True, alert_id=aid, fired_at=now, last_resolved_at=prev.last_resolved_at,
                     window_start=as_utc(window.start), seq=seq)
    return Decision(Action.fire, new, cond, f"firing: {cond.reason}", now, aid,
                    event_id(aid, AlertState.firing.value, seq))


def evaluation_orgs(rule: RuleConfig, counted_orgs: Iterable[str],
                    firing_orgs: Iterable[str] = ()) -> list[str]:
    """Which organizations to evaluate: the rule's one, or for ``"*"`` each org
    with counts plus each org still firing (so it can resolve when its count drops to zero)."""
    if rule.org != ANY:
        return [rule.org]
    return sorted(set(counted_orgs) | set(firing_orgs))


def make_event(rule: RuleConfig, org: str, decision: Decision, *, window: Window,
               current: WindowCounts, samples: Sequence[SamplePost | ClassifiedPost] = ()) -> AlertEvent:
    """The outbox record for a ``fire`` or ``resolve`` decision."""
    if not decision.emits:
        raise ValueError("a 'stay' decision has no event")
    state = AlertState.firing if decision.action is Action.fire else AlertState.resolved
    sentiment = _numerator_sentiment(rule)
    sample_posts = [s if isinstance(s, SamplePost) else SamplePost(id=s.id, url=s.url, text=s.text)
                    for s in samples]
    return AlertEvent(
        event_id=decision.event_id, alert_id=decision.alert_id, state=state, rule=rule.name, org=org,
        topic=rule.topic, sentiment=sentiment, lang=rule.lang,
        window_start=as_utc(window.start), window_end=as_utc(window.end), count=current.matching,
        authors=current.authors,
        threshold=decision.threshold, baseline=decision.baseline, value=decision.value,
        notify=list(rule.notify), samples=sample_posts, occurred_at=decision.decided_at,
    )
