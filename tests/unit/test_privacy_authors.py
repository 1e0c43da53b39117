"""Distinct authors: the counts remember them (bounded), rules with ``min_authors`` use them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from lyssna.alerts.counts import MAX_AUTHORS_PER_CELL, CountBuckets
from lyssna.alerts.rules import (
    Action, WindowCounts, check_condition, counts_for, evaluate, make_event, measured_cells,
)
from lyssna.alerts.windows import Window
from lyssna.common.config import MAX_MIN_AUTHORS, RuleConfig
from lyssna.common.contracts import ClassifiedPost, ModelInfo

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=timezone.utc)
HOUR = Window(T0, T0 + timedelta(hours=1))
MODEL = ModelInfo(encoder="e", heads="h")


def post(pid: str, author: str | None, *, minute: int = 0, sentiment: str = "negative",
         org: str = "Acme") -> ClassifiedPost:
    return ClassifiedPost(id=pid, source="t", text="x", author=author, author_key_id="k1" if author else None,
                          created_at=T0 + timedelta(minutes=minute), lang="sv", orgs=[org],
                          topics=["employee_satisfaction"], sentiment=sentiment, model=MODEL)


def rule(min_authors: int | None = 3, threshold: int = 6, **kw) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", "condition": {"type": "count", "threshold": threshold},
                                      "min_authors": min_authors, **kw})


def counted(posts, table=None, now=T0 + timedelta(minutes=90)) -> CountBuckets:
    b = CountBuckets({} if table is None else table, timedelta(minutes=1), timedelta(hours=2))
    for p in posts:
        b.add(p.orgs[0], p, now)
    return b


def authors(r: RuleConfig, b: CountBuckets, org: str = "Acme", **kw) -> int:
    return b.distinct_authors(org, *HOUR, measured_cells(r, org), **kw)


def judge(r: RuleConfig, b: CountBuckets, org: str = "Acme"):
    current = counts_for(r, org, b.cells(org, *HOUR), authors(r, b, org))
    return current, evaluate(r, org, window=HOUR, current=current, now=T0 + timedelta(minutes=30))


def test_many_posts_from_one_author_do_not_fire_the_same_count_from_enough_authors_does():
    one = counted(post(f"p{i}", "anon-a", minute=i) for i in range(6))
    current, decision = judge(rule(), one)
    assert (current.matching, current.authors) == (6, 1)
    assert decision.action is Action.stay
    assert "1 distinct author(s), below min_authors 3" in decision.reason

    three = counted(post(f"p{i}", f"anon-{i % 3}", minute=i) for i in range(6))
    current, decision = judge(rule(), three)
    assert (current.matching, current.authors) == (6, 3)
    assert decision.action is Action.fire
    assert make_event(rule(), "Acme", decision, window=HOUR, current=current).authors == 3


def test_without_min_authors_the_count_alone_decides():
    one = counted(post(f"p{i}", "anon-a", minute=i) for i in range(6))
    assert judge(rule(min_authors=None), one)[1].action is Action.fire


def test_distinct_authors_follow_the_rules_filters_and_the_window():
    posts = [post("a1", "anon-a"), post("b1", "anon-b", sentiment="positive"),
             post("c1", "anon-c", minute=61), post("d1", None), post("e1", "anon-e", org="Globex")]
    b = counted(posts)
    assert authors(rule(), b) == 2  # any sentiment; c is in the next hour
    assert authors(rule(sentiment="negative"), b) == 1
    assert authors(rule(topic="recruitment"), b) == 0
    assert authors(rule(lang="en"), b) == 0
    assert authors(rule(), b, "Globex") == 1
    assert authors(rule(org="Globex"), b, "Acme") == 0  # not this rule's organization


def test_a_post_counted_twice_and_an_author_posting_again_are_one_author_and_one_write():
    table: dict = {}
    b = counted([post("p1", "anon-a"), post("p1", "anon-a"), post("p2", "anon-a")], table)
    author_keys = [k for k in table if "@" in k]
    assert len(author_keys) == 1  # one small key per (bucket, author), not per post
    assert authors(rule(), b) == 1
    assert "anon-a" not in "".join(table)  # the table keys hold a hash of the pseudonym


def test_authors_survive_a_rebuild_from_the_table_and_expire_with_their_bucket():
    table: dict = {}
    counted([post("p1", "anon-a"), post("p2", "anon-b", minute=1)], table)
    again = CountBuckets(table, timedelta(minutes=1), timedelta(hours=2))  # a restart: only the table is left
    assert authors(rule(), again) == 2
    again.expire("Acme", T0 + timedelta(hours=2, minutes=2))
    assert authors(rule(), again) == 0 and not any("@" in k for k in table)


def test_an_organization_name_with_at_signs_is_no_author_key():
    table: dict = {}
    counted([post("p1", "anon-a", org="Team @ Acme#1")], table)
    again = CountBuckets(table, timedelta(minutes=1), timedelta(hours=2))
    assert again.orgs() == {"Team @ Acme#1"}
    assert authors(rule(), again, "Team @ Acme#1") == 1


def test_authors_are_remembered_up_to_the_cap_per_cell_so_any_min_authors_stays_exact():
    n = MAX_AUTHORS_PER_CELL + 25
    table: dict = {}
    b = counted((post(f"p{i}", f"anon-{i}") for i in range(n)), table)
    assert sum("@" in k for k in table) == MAX_AUTHORS_PER_CELL  # bounded under a flood
    current = counts_for(rule(MAX_MIN_AUTHORS), "Acme", b.cells("Acme", *HOUR), authors(rule(), b))
    assert current.matching == n and current.authors == MAX_AUTHORS_PER_CELL
    assert check_condition(rule(MAX_MIN_AUTHORS), current).met


def test_min_authors_is_validated_and_unknown_authors_never_satisfy_it():
    with pytest.raises(ValidationError):
        rule(min_authors=MAX_MIN_AUTHORS + 1)
    with pytest.raises(ValidationError):
        rule(min_authors=0)
    assert not check_condition(rule(), WindowCounts(6, 6, {"negative": 6}, authors=None)).met
    assert check_condition(rule(), WindowCounts(6, 6, {"negative": 6}, authors=3)).met
    assert WindowCounts.from_dict(WindowCounts(1, 1, {}, 1).to_dict()).authors == 1


def test_min_authors_also_guards_ratio_and_spike_rules():
    ratio = RuleConfig.model_validate({"name": "q", "min_authors": 2, "condition": {
        "type": "ratio", "threshold": 0.5, "min_volume": 2}})
    assert not check_condition(ratio, WindowCounts(4, 4, {"negative": 4}, authors=1)).met
    assert check_condition(ratio, WindowCounts(4, 4, {"negative": 4}, authors=2)).met
    spike = RuleConfig.model_validate({"name": "s", "min_authors": 2, "condition": {
        "type": "spike", "factor": 2.0, "min_volume": 2}})
    base = [WindowCounts(1, 1, {"negative": 1})] * 3
    assert not check_condition(spike, WindowCounts(9, 9, {"negative": 9}, authors=1), base).met
    assert check_condition(spike, WindowCounts(9, 9, {"negative": 9}, authors=2), base).met


def test_the_distinct_authors_metric_counts_the_trailing_hour_per_sentiment():
    from prometheus_client import CollectorRegistry, generate_latest

    from lyssna.alerts.counts import DistinctAuthorsCollector

    b = counted([post("a1", "anon-a"), post("a2", "anon-a", sentiment="positive"), post("b1", "anon-b"),
                 post("n1", None, org="Globex"), post("old", "anon-c", minute=-5)])
    registry = CollectorRegistry()
    registry.register(DistinctAuthorsCollector(b, clock=lambda: T0 + timedelta(minutes=56)))
    text = generate_latest(registry).decode()
    assert 'lyssna_alerts_distinct_authors{org="Acme",sentiment="all"} 2.0' in text
    assert 'lyssna_alerts_distinct_authors{org="Acme",sentiment="negative"} 2.0' in text
    assert 'lyssna_alerts_distinct_authors{org="Acme",sentiment="positive"} 1.0' in text
    assert 'lyssna_alerts_distinct_authors{org="Globex",sentiment="all"} 0.0' in text  # counted, no authors


def test_authors_are_counted_across_buckets_once_each_and_only_up_to_the_cap():
    # The same two people every minute for an hour: two authors, not 120.
    b = counted(post(f"p{m}-{a}", f"anon-{a}", minute=m) for m in range(60) for a in range(2))
    assert authors(rule(), b) == 2
    # A different person every minute: counting stops at the cap (every min_authors is within it).
    many = counted(post(f"q{m}-{a}", f"anon-{m}-{a}", minute=m) for m in range(60) for a in range(3))
    assert authors(rule(), many) == MAX_AUTHORS_PER_CELL
    assert authors(rule(), many, cap=1000) == 180
