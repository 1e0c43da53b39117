"""The yardstick row of the model card: a second labeller's agreement with the labels."""

import json

from lyssna.classify.training.dataset import Example, load_examples, load_review
from lyssna.classify.training.evaluation import render_decisions, second_labeller_figures


def _ex(i, topics, sentiment):
    return Example(f"p{i}", "sv", "text", tuple(topics), sentiment, ())


def test_second_labeller_figures_compare_the_conjunction_on_the_posts_read():
    es, neg = "employee_satisfaction", "negative"
    examples = [_ex(1, [es], neg), _ex(2, [es], neg), _ex(3, [es], "neutral"), _ex(4, [], neg), _ex(5, [es], neg)]
    review = {"p1": ((es,), neg), "p2": ((), neg), "p3": ((es,), neg), "p4": ((), neg)}  # p5 not read
    fig = second_labeller_figures(examples, review, es, neg)
    # Really so among the read: p1, p2. The second labeller says so for p1 and p3.
    assert fig == {"precision": 0.5, "recall": 0.5, "counted": 2, "gold": 2, "read": 4}


def test_the_card_shows_the_yardstick_under_its_conjunction():
    row = {None: {"precision": 0.8, "recall": 0.7, "counted": 10, "gold": 11}}
    fig = {"path": "fp32", "n": 1013, "conjunctions": {"employee_satisfaction+negative": {"all": row}},
           "topic_reliability": {"bins": [], "ece": 0.0}, "sentiment_reliability": {"bins": [], "ece": 0.0},
           "second_labeller": {"employee_satisfaction+negative": {"precision": 0.95, "recall": 0.97,
                                                                  "counted": 1, "gold": 1, "read": 1013}}}
    text = render_decisions(fig)
    assert "read these 1013 posts blind" in text and "scores 0.95 / 0.97 against them" in text
    # A review of part of the split says so, rather than claiming the whole of it.
    fig["second_labeller"]["employee_satisfaction+negative"]["read"] = 900
    assert "read 900 of these 1013 posts blind" in render_decisions(fig)


def test_the_committed_review_reads_only_test_posts(tmp_path):
    review = load_review()
    test_ids = {e.id for e in load_examples() if e.split == "test"}
    assert set(review) <= test_ids and len(review) >= 1000
    assert load_review(tmp_path / "missing.jsonl") == {}
    (tmp_path / "r.jsonl").write_text(json.dumps({"id": "a", "second": {"topics": ["engagement"], "sentiment": "neutral"}}))
    assert load_review(tmp_path / "r.jsonl") == {"a": (("engagement",), "neutral")}
