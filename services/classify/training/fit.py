"""Train and evaluate the heads: ``lyssna train`` and ``lyssna evaluate``.

Seeded and deterministic: the split is fixed by post id, the encoder (with its
fine-tuning adapter, :mod:`.finetune`) is fixed while the heads are fitted, and
the heads are L2-regularised logistic regressions, so a rerun on the same data
gives the same heads and the same figures.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from lyssna.common.contracts import LABELS, SENTIMENTS

from .dataset import Example, load_examples, sentiment_vector, topic_matrix
from .model_prep import weights_stamp
from .orgpairs import train_relevance
from ..heads import DEFAULT_HEADS_DIR, Heads

SEED = 20261126
# Relative to where `lyssna train` runs (make runs it in the repo root).
CACHE_DIR = Path(".local") / "cache"


def embed_examples(encoder, examples: list[Example], progress: Callable[[str], None] = print) -> np.ndarray:
    """Embeddings for the examples, cached on disk per text for each encoder, precision,
    layers and length limit, so retraining a head does not re-run the transformer and
    retraining after posts were added embeds only the new ones."""
    key = hashlib.sha256("\x1e".join([encoder.name, encoder.precision, repr(encoder.layers),
                                      str(getattr(encoder, "max_length", "")),
                                      weights_stamp(encoder.name)]).encode()).hexdigest()[:20]
    path = CACHE_DIR / f"emb-{key}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as stored:
            known = dict(zip(stored["texts"].tolist(), stored["vectors"]))
    ids = [hashlib.sha256(e.text.encode()).hexdigest()[:24] for e in examples]
    missing = dict((h, e.text) for h, e in zip(ids, examples) if h not in known)
    if missing:
        progress(f"embedding {len(missing)} of {len(examples)} posts with {encoder.name} ({encoder.precision})")
        known.update(zip(missing, encoder.embed(list(missing.values()))))
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.npz")
        np.savez(tmp, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
        os.replace(tmp, path)  # whole or not at all: a run stopped halfway leaves the old cache
    if not examples:
        return np.zeros((0, getattr(encoder, "dim", 0)), dtype=np.float32)
    return np.stack([known[h] for h in ids]).astype(np.float32)


C_GRID = (1.0, 4.0, 16.0, 64.0)
FOLDS = 5


def _logreg(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=SEED)


def tune_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The cut-off with the best F1; ties go to the middle of the plateau so the
    choice is not on a knife edge."""
    grid = np.round(np.arange(0.10, 0.91, 0.01), 2)
    f1s = np.array([f1_score(y, scores >= t, zero_division=0) for t in grid])
    best = np.flatnonzero(f1s >= f1s.max() - 1e-9)
    return float(grid[best[len(best) // 2]])


def _out_of_fold(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """Probabilities for every row from a model that did not see it (binary: P(1);
    multi-class: the full matrix)."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    classes = np.unique(y)
    out = np.zeros((len(y), len(classes)))
    for tr, va in folds.split(x, y):
        out[va] = _logreg(c).fit(x[tr], y[tr]).predict_proba(x[va])
    return out[:, 1] if len(classes) == 2 else out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(oof: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept that make sigmoid(a*z + b) of the out-of-fold logits z match
    how often the label is really there. Class-balanced fitting inflates mid-range
    scores (on validation, posts scored 0.55 had the label 28% of the time), and rules
    compare scores with min_score, so a score should read as a probability."""
    m = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(oof)[:, None], y)
    return float(m.coef_[0, 0]), float(m.intercept_[0])


def temperature(oof: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature with the lowest out-of-fold log-loss (the argmax, and so
    the predicted sentiment, does not change; only how sure the scores say it is)."""
    logp = np.log(np.clip(oof, 1e-9, 1.0))
    grid = np.round(np.arange(0.3, 5.001, 0.05), 2)

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())
    return float(min(grid, key=nll))


def fit_heads(x: np.ndarray, examples: list[Example], *, encoder_name: str, layers: tuple[int, ...],
              version: str, calibrate_on: np.ndarray | None = None,
              progress: Callable[[str], None] = print) -> Heads:
    """Fit on train+validation. The regularisation strength and each label's threshold
    are chosen on out-of-fold predictions (five validation folds), so no choice is
    made on rows the model was fitted to, and the held-out test split is never used.
    The scores are calibrated (:func:`platt`, :func:`temperature`, folded into the
    weights, so serving costs nothing more) on the out-of-fold predictions of the
    ``calibrate_on`` rows only: the encoder's adapter was trained on the train split,
    so its features separate those posts better than any new post, and scores
    calibrated on them read too sure (held-out topic ECE 0.021, against 0.011 when
    calibrated on the validation rows alone). By default, every row."""
    y_topics, y_sent = topic_matrix(examples), sentiment_vector(examples)
    cal = np.ones(len(examples), bool) if calibrate_on is None else np.asarray(calibrate_on, bool)
    if not cal.any():
        raise ValueError("no rows to calibrate on: the validation split is empty")
    weights, bias, thresholds = [], [], []
    for j, label in enumerate(LABELS):
        best = (-1.0, 0.0, None)
        for c in C_GRID:
            oof = _out_of_fold(x, y_topics[:, j], c)
            f1 = f1_score(y_topics[:, j], oof >= tune_threshold(oof, y_topics[:, j]), zero_division=0)
            if f1 > best[0] + 1e-9:
                best = (f1, c, oof)
        _, c, oof = best
        a, b = platt(oof[cal], y_topics[cal, j])
        calibrated = 1.0 / (1.0 + np.exp(-(a * _logit(oof) + b)))
        t = tune_threshold(calibrated, y_topics[:, j])
        f1 = f1_score(y_topics[:, j], calibrated >= t, zero_division=0)
        progress(f"  {label}: C={c:g} calibration {a:.2f}z{b:+.2f} threshold={t:.2f} cross-validated F1={f1:.3f}")
        model = _logreg(c).fit(x, y_topics[:, j])
        weights.append(a * model.coef_[0])
        bias.append(a * model.intercept_[0] + b)
        thresholds.append(t)
    sent_oof = {c: _out_of_fold(x, y_sent, c) for c in C_GRID}
    sent_f1 = {c: f1_score(y_sent, p.argmax(1), average="macro") for c, p in sent_oof.items()}
    c_sent = max(sent_f1, key=sent_f1.get)
    temp = temperature(sent_oof[c_sent][cal], y_sent[cal])
    progress(f"  sentiment: C={c_sent:g} temperature {temp:g} cross-validated macro-F1={sent_f1[c_sent]:.3f}")
    sent = _logreg(c_sent).fit(x, y_sent)
    sent.coef_, sent.intercept_ = sent.coef_ / temp, sent.intercept_ / temp
    return Heads(version=version, encoder=encoder_name, layers=layers,
                 topic_weights=np.array(weights, dtype=np.float32), topic_bias=np.array(bias, dtype=np.float32),
                 thresholds=np.array(thresholds, dtype=np.float32),
                 sentiment_weights=sent.coef_.astype(np.float32), sentiment_bias=sent.intercept_.astype(np.float32))


def scores(heads: Heads, x: np.ndarray, examples: list[Example]) -> dict:
    """Macro-F1 for topics and sentiment, per label and per language."""
    y_topics, y_sent = topic_matrix(examples), sentiment_vector(examples)
    pred_topics = (heads.topic_probs(x) >= heads.thresholds).astype(int)
    pred_sent = heads.sentiment_probs(x).argmax(1)

    def block(mask: np.ndarray) -> dict:
        yt, pt, ys, ps = y_topics[mask], pred_topics[mask], y_sent[mask], pred_sent[mask]
        return {
            "n": int(mask.sum()),
            "topic_macro_f1": round(float(f1_score(yt, pt, average="macro", zero_division=0)), 4),
            "sentiment_macro_f1": round(float(f1_score(ys, ps, average="macro", labels=range(3), zero_division=0)), 4),
        }

    langs = np.array([e.lang for e in examples])
    result = {"overall": block(np.ones(len(examples), bool)),
              "per_language": {lang: block(langs == lang) for lang in sorted(set(langs))},
              "per_label": {}}
    for j, label in enumerate(LABELS):
        result["per_label"][label] = {
            "support": int(y_topics[:, j].sum()),
            "f1": round(float(f1_score(y_topics[:, j], pred_topics[:, j], zero_division=0)), 4),
            "threshold": round(float(heads.thresholds[j]), 2)}
    for k, s in enumerate(SENTIMENTS):
        result["per_label"][f"sentiment:{s}"] = {
            "support": int((y_sent == k).sum()),
            "f1": round(float(f1_score(y_sent == k, pred_sent == k, zero_division=0)), 4)}
    return result


def split(examples: list[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for e in examples:
        out[e.split].append(e)
    return out


def train(encoder, out_dir: Path = DEFAULT_HEADS_DIR, progress: Callable[[str], None] = print) -> Heads:
    examples = load_examples()
    parts = split(examples)
    progress("split: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()) + " (test is held out)")
    fit_on = parts["train"] + parts["validation"]
    x = embed_examples(encoder, fit_on, progress)
    # The version names the data and the encoder's weights (a new adapter, new heads).
    data_hash = hashlib.sha256("".join([e.id + e.text + repr(e.topics) + e.sentiment for e in examples]
                                       + [weights_stamp(encoder.name)]).encode()).hexdigest()[:12]
    heads = fit_heads(x, fit_on, encoder_name=encoder.name, layers=encoder.layers,
                      version=f"heads-{data_hash}", progress=progress,
                      calibrate_on=np.array([e.split == "validation" for e in fit_on]))
    path = heads.save(out_dir)
    progress(f"wrote {path} ({heads.version}); held-out figures: `lyssna evaluate`")
    train_relevance(encoder, out_dir, progress)
    return heads


def evaluate(encoder, heads: Heads, progress: Callable[[str], None] = print) -> dict:
    """Figures on the held-out test split, which training and tuning never see."""
    test = split(load_examples())["test"]
    return scores(heads, embed_examples(encoder, test, progress), test)
