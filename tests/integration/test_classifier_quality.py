"""The acceptance figures, recomputed from the committed heads on the held-out split."""

import re

import pytest

from lyssna.classify.classifier import Classifier
from lyssna.classify.training.evaluation import MODEL_CARD
from lyssna.classify.heads import Heads
from lyssna.common.config import OrganizationConfig, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report():
    from lyssna.classify.encoder import Encoder
    from lyssna.classify.training.fit import evaluate

    heads = Heads.load()
    encoder = Encoder(load_settings(None, env={}).classify.model, precision="auto", layers=heads.layers)
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


def test_model_card_describes_the_committed_heads(report):
    heads, r = report
    card = MODEL_CARD.read_text()
    assert f"`{heads.version}`" in card, "MODEL_CARD.md is stale: run `lyssna evaluate --write-card`"
    row = re.search(r"\| (bf16|fp32) \| ([0-9.]+) \| ([0-9.]+) \|", card)
    assert row and abs(float(row.group(2)) - r["overall"]["topic_macro_f1"]) < 0.0015


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
