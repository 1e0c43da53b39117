"""The acceptance figures, recomputed from the committed heads on the held-out split."""

import re

import pytest

from lyssna.classify.classifier import Classifier
from lyssna.classify.training.evaluation import MODEL_CARD, decision_figures
from lyssna.classify.heads import Heads
from lyssna.common.config import OrganizationConfig, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served():
    from lyssna.classify.encoder import Encoder

    heads = Heads.load()
    encoder = Encoder(load_settings(None, env={}).classify.model, precision="auto", layers=heads.layers)
    return heads, encoder


@pytest.fixture(scope="module")
def report(served):
    from lyssna.classify.training.fit import evaluate

    heads, encoder = served
    return heads, evaluate(encoder, heads, progress=lambda m: None)


def test_held_out_targets(report):
    _, r = report
    overall = r["overall"]
    assert overall["n"] >= 300
    assert overall["topic_macro_f1"] >= 0.80
    assert overall["sentiment_macro_f1"] >= 0.80
    sv = r["per_language"]["sv"]
    assert sv["topic_macro_f1"] >= overall["topic_macro_f1"] - 0.05
    assert sv["sentiment_macro_f1"] >= overall["sentiment_macro_f1"] - 0.05


def _card_row(card: str, path: str) -> tuple[float, float]:
    row = re.search(rf"^\| {path} \| ([0-9.]+) \| ([0-9.]+) \|$", card, re.M)
    assert row, f"MODEL_CARD.md has no row for the {path} path: run `lyssna evaluate --write-card`"
    return float(row.group(1)), float(row.group(2))


def test_model_card_describes_the_committed_heads(report, served):
    heads, r = report
    path = served[1].precision
    card = MODEL_CARD.read_text()
    assert f"`{heads.version}`" in card, "MODEL_CARD.md is stale: run `lyssna evaluate --write-card`"
    topic, sentiment = _card_row(card, path)
    assert abs(topic - r["overall"]["topic_macro_f1"]) < 0.0015
    assert abs(sentiment - r["overall"]["sentiment_macro_f1"]) < 0.0015
    # The served path keeps the quality of its own fp32 (figures from the same `make evaluate`).
    fp32 = _card_row(card, "fp32")
    assert abs(fp32[0] - topic) <= 0.01 and abs(fp32[1] - sentiment) <= 0.01


def test_model_card_rule_table_matches_the_served_path(served):
    heads, encoder = served
    fig = decision_figures(encoder, heads, progress=lambda m: None)
    es_neg = fig["conjunctions"]["employee_satisfaction+negative"]["all"]
    card = MODEL_CARD.read_text()
    block = card[card.index("`employee_satisfaction+negative`:"):]
    row = re.search(r"^\| all \| (\d+) \| ([0-9.]+) / ([0-9.]+) \|", block, re.M)
    assert row, "MODEL_CARD.md lacks the rule table: run `lyssna evaluate --write-card`"
    assert int(row.group(1)) == es_neg[None]["gold"]
    assert abs(float(row.group(2)) - es_neg[None]["precision"]) < 0.006
    assert abs(float(row.group(3)) - es_neg[None]["recall"]) < 0.006
    # Scores that rules compare with min_score must mean something: well calibrated overall.
    assert fig["topic_reliability"]["ece"] < 0.1 and fig["sentiment_reliability"]["ece"] < 0.1


def test_classifier_end_to_end_on_a_few_posts():
    settings = load_settings(None, env={})
    settings = settings.model_copy(update={"organizations": [
        OrganizationConfig(name="Nordvik Energi", aliases=["Nordvik"])]})
    clf = Classifier.from_settings(settings)
    results = clf.classify_texts([
        "Vi söker fler montörer till Nordviks verkstad i Luleå! Ansök senast fredag 👷 #jobb",
        "Tredje veckan i rad med obetald övertid på Nordvik. Chefen bryr sig inte. Orkar inte mer.",
    ])
    assert results[0].orgs == ["Nordvik Energi"] and "recruitment" in results[0].topics
    assert results[1].sentiment == "negative" and "employee_satisfaction" in results[1].topics
    assert results[0].lang == "sv"
