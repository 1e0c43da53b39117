"""A rule's min_score: only posts the classifier is sure enough of count (rules and counts)."""

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.alerts.counts import CountBuckets
from lyssna.alerts.rules import check_condition, counts_for, keys_for, matches, score_level, scored_cell_keys
from lyssna.common.config import ConfigError, RuleConfig, load_settings
from lyssna.common.contracts import ClassifiedPost, ModelInfo

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
MODEL = ModelInfo(encoder="e", heads="h")
COUNT2 = {"type": "count", "threshold": 2}


def post(pid: str, topic_score: float, sentiment_score: float, *, sentiment="negative",
         topic="employee_satisfaction", at=T0) -> ClassifiedPost:
    others = {s: round((1 - sentiment_score) / 2, 4) for s in ("positive", "neutral", "negative") if s != sentiment}
    return ClassifiedPost(id=pid, source="t", text="x", created_at=at, lang="sv", orgs=["Acme"], topics=[topic],
                          topic_scores={topic: topic_score, "recruitment": 0.02}, sentiment=sentiment,
                          sentiment_scores={sentiment: sentiment_score, **others}, model=MODEL)


def rule(**kw) -> RuleConfig:
    return RuleConfig(name="r", **{"topic": "employee_satisfaction", "sentiment": "negative",
                                   "condition": COUNT2, **kw})


def test_score_levels_floor_to_twentieths_without_float_slips():
    assert [score_level(s) for s in (0.7, 0.6999, 0.75, 0.7499, 1.0, 0.0, None)] == [14, 13, 15, 14, 20, 0, 0]


def test_matches_needs_both_the_topic_and_the_sentiment_score():
    r = rule(min_score=0.7)
    assert matches(r, post("a", 0.7, 0.7))
    assert not matches(r, post("b", 0.69, 0.95))     # topic label given, but not sure enough
    assert not keys_for(r, post("b", 0.69, 0.95))    # ... so not even in scope
    assert not matches(r, post("c", 0.95, 0.69))     # in scope, sentiment not sure enough
    assert keys_for(r, post("c", 0.95, 0.69)) == ["Acme"]
    assert matches(rule(), post("d", 0.3, 0.4))      # without min_score the labels decide


def count_posts(posts) -> CountBuckets:
    b = CountBuckets({}, timedelta(minutes=1), timedelta(hours=2))
    for p in posts:
        b.add("Acme", p, T0 + timedelta(minutes=30))
    return b


def test_counts_apply_min_score_per_post():
    posts = [post("sure", 0.9, 0.9), post("sure2", 0.8, 0.71), post("weak-topic", 0.5, 0.9),
             post("weak-sentiment", 0.9, 0.55), post("other-sentiment", 0.9, 0.9, sentiment="neutral")]
    b = count_posts(posts)
    plain = counts_for(rule(), "Acme", b.cells("Acme", T0, T0 + HOUR))
    assert plain.matching == 4
    sure = counts_for(rule(min_score=0.7), "Acme", b.cells("Acme", T0, T0 + HOUR, scored=True))
    assert sure.matching == 2
    # In scope: every post sure of the topic; the measured sentiment also needs its score.
    assert sure.total == 4 and sure.by_sentiment == {"negative": 2, "neutral": 1}
    assert check_condition(rule(min_score=0.7), sure).met
    assert not check_condition(rule(min_score=0.75), counts_for(
        rule(min_score=0.75), "Acme", b.cells("Acme", T0, T0 + HOUR, scored=True))).met


def test_ratio_with_min_score_compares_sure_sentiment_with_sure_scope():
    r = rule(sentiment=None, min_score=0.6, condition={"type": "ratio", "sentiment": "negative",
                                                       "threshold": 0.5, "min_volume": 2})
    b = count_posts([post("n1", 0.9, 0.9), post("n2", 0.9, 0.5), post("p1", 0.9, 0.9, sentiment="positive"),
                     post("off", 0.4, 0.9)])
    c = counts_for(r, "Acme", b.cells("Acme", T0, T0 + HOUR, scored=True))
    assert (c.total, c.by_sentiment.get("negative")) == (3, 1)
    assert not check_condition(r, c).met  # 1/3; without min_score it would be 2/3 of these


def test_unscored_cells_do_not_count_for_a_min_score_rule():
    b = count_posts([post("a", 0.9, 0.9), post("b", 0.9, 0.9)])
    assert counts_for(rule(min_score=0.5), "Acme", b.cells("Acme", T0, T0 + HOUR)).matching == 0
    # A bucket counted before score levels were kept: plain rules still see it, min_score rules cannot.
    legacy = CountBuckets({f"Acme|{b.bucket_start(T0)}": {"c": {"employee_satisfaction|negative|*": 3}}},
                          timedelta(minutes=1), timedelta(hours=2))
    assert counts_for(rule(), "Acme", legacy.cells("Acme", T0, T0 + HOUR)).matching == 3
    assert counts_for(rule(min_score=0.5), "Acme", legacy.cells("Acme", T0, T0 + HOUR, scored=True)).matching == 0


def test_scored_cells_carry_the_cell_topic_score_and_star_is_always_sure():
    cells = scored_cell_keys(post("a", 0.42, 0.81))
    assert ("Acme", "employee_satisfaction", "negative", "sv", 8, 16) in cells
    assert ("Acme", "*", "negative", "*", 20, 16) in cells


@pytest.mark.parametrize("bad, fix", [
    ({"min_score": 0.72}, "min_score: 0.7"),
    ({"min_score": 0.99}, "less than or equal to 0.95"),
    ({"topic": None, "sentiment": None, "min_score": 0.7}, "add topic and/or sentiment"),
])
def test_config_errors_name_min_score_and_the_fix(tmp_path, bad, fix):
    r = {"name": "r", "topic": "employee_satisfaction", "sentiment": "negative", "condition": COUNT2, **bad}
    path = tmp_path / "c.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"rules": [{k: v for k, v in r.items() if v is not None}]}))
    with pytest.raises(ConfigError) as e:
        load_settings(str(path), env={})
    assert "min_score" in str(e.value) and fix in str(e.value)


def test_min_score_on_a_ratio_without_topic_or_sentiment_is_allowed():
    r = RuleConfig(name="r", min_score=0.6, condition={"type": "ratio", "threshold": 0.5})
    assert r.min_score == 0.6
