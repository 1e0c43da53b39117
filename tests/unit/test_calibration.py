"""The heads' scores read as probabilities (rules compare them with min_score)."""

import numpy as np

from lyssna.classify.training.dataset import Example
from lyssna.classify.training.evaluation import reliability
from lyssna.classify.training.fit import fit_heads, temperature
from lyssna.common.contracts import LABELS, SENTIMENTS


def synthetic(n: int, seed: int) -> tuple[np.ndarray, list[Example]]:
    """Rare labels (about 12%) with overlapping classes: class-balanced logistic
    regression alone inflates their mid-range scores."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16))
    examples = []
    for i in range(n):
        topics = tuple(label for j, label in enumerate(LABELS) if x[i, j] + 0.8 * rng.normal() > 1.3)
        sentiment = SENTIMENTS[int(np.argmax(x[i, 8:11] + rng.normal(size=3)))]
        examples.append(Example(f"p{i}", "sv", "text", topics, sentiment, ()))
    return x.astype(np.float32), examples


def test_fitted_scores_match_observed_frequencies():
    x, examples = synthetic(1500, 1)
    heads = fit_heads(x, examples, encoder_name="e", layers=(12,), version="v", progress=lambda m: None)
    x_new, new = synthetic(3000, 2)
    probs = heads.topic_probs(x_new)
    observed = np.array([[label in e.topics for label in LABELS] for e in new])
    assert reliability(probs.ravel(), observed.ravel())["ece"] < 0.03
    sent = heads.sentiment_probs(x_new)
    right = sent.argmax(1) == np.array([SENTIMENTS.index(e.sentiment) for e in new])
    assert reliability(sent.max(1), right)["ece"] < 0.04


def test_temperature_softens_overconfident_probabilities_and_keeps_the_argmax():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    logits = rng.normal(size=(2000, 3))
    logits[np.arange(2000), y] += 1.0
    overconfident = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)
    assert 3.5 <= temperature(overconfident, y) <= 4.5
    assert abs(temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), y) - 1.0) <= 0.1


def memorised(n: int, seed: int, train_share: float) -> tuple[np.ndarray, list[Example], np.ndarray]:
    """Like an encoder fine-tuned on the train rows: for those, the features carry the
    noise that decided their labels (a perfect fit); for the others only the signal."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 16))
    noise = 0.8 * rng.normal(size=(n, len(LABELS)))
    seen = rng.random(n) < train_share
    x = z.copy()
    x[seen, :len(LABELS)] += noise[seen]
    examples = [Example(f"p{i}", "sv", "text",
                        tuple(label for j, label in enumerate(LABELS) if z[i, j] + noise[i, j] > 1.3),
                        SENTIMENTS[int(np.argmax(z[i, 8:11]))], ()) for i in range(n)]
    return x.astype(np.float32), examples, ~seen


def test_calibrating_on_rows_the_encoder_never_saw_keeps_new_scores_honest():
    x, examples, unseen = memorised(1500, 3, 0.7)
    x_new, new, _ = memorised(3000, 4, 0.0)
    observed = np.array([[label in e.topics for label in LABELS] for e in new]).ravel()

    def ece(calibrate_on):
        heads = fit_heads(x, examples, encoder_name="e", layers=(12,), version="v",
                          calibrate_on=calibrate_on, progress=lambda m: None)
        return reliability(heads.topic_probs(x_new).ravel(), observed)["ece"]
    assert ece(unseen) < 0.03
    assert ece(None) > 2 * ece(unseen)  # calibrated on memorised rows, new scores read too sure
