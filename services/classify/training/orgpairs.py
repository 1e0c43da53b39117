"""The (post, organization) pairs: training the relevance head and scoring the
whole watchlist decision (matcher, variants, relevance) on held-out pairs.

``data/orgpairs.train.jsonl`` trains the head (regularisation and threshold on
out-of-fold predictions); ``data/orgpairs.test.jsonl`` is held out and only
scored. A pair is ``{"text", "org", "about", "ambiguous", "lang", "kind"}``:
is ``text`` about ``org`` (of ``data/orgpairs.watchlist.yaml``)?
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..heads import DEFAULT_HEADS_DIR
from ..mentions import MentionMatcher, Organization
from ..relevance import EXTRAS, OrgDecider, OrgProfile, RelevanceHead, extras, features, keyword_terms, profile_text
from .dataset import DATA_DIR, read_jsonl
from .model_prep import weights_stamp

SEED = 20261201
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 5


def load_watchlist(path: Path = DATA_DIR / "orgpairs.watchlist.yaml") -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["organizations"]


def load_pairs(name: str, data_dir: Path = DATA_DIR) -> list[dict]:
    path = data_dir / f"orgpairs.{name}.jsonl"
    return [row for _, row in read_jsonl(path)]


def matcher_and_profiles(orgs: Sequence[dict]) -> tuple[MentionMatcher, list[OrgProfile]]:
    matcher = MentionMatcher(Organization(o["name"], tuple(o.get("aliases", ()))) for o in orgs)
    profiles = [OrgProfile(o["name"], bool(o.get("ambiguous")), o.get("description"), tuple(o.get("context", ())))
                for o in orgs]
    return matcher, profiles


def _embed(encoder, texts: list[str], progress: Callable[[str], None]) -> np.ndarray:
    from .fit import embed_examples  # the same on-disk cache as the topic heads

    return embed_examples(encoder, [SimpleNamespace(text=t) for t in texts], progress)


def training_rows(rows: Sequence[dict], matcher: MentionMatcher, profiles: Sequence[OrgProfile]) -> list[dict]:
    """The pairs of ambiguous organizations that the matcher finds, by any of their
    names. The head judges only mentions by the ambiguous name, but posts that use
    the whole name are about the organization in the same way, and they more than
    double the positives (cross-validated F1 0.98 against 0.90 without them)."""
    ambiguous = {p.name for p in profiles if p.ambiguous}
    return [r for r in rows if r["org"] in ambiguous
            and any(m.org == r["org"] for m in matcher.find_spans(r["text"]))]


def pair_matrix(rows: Sequence[dict], post_vectors: np.ndarray, org_vectors: dict[str, np.ndarray],
                profiles: dict[str, OrgProfile], matcher: MentionMatcher, n_layers: int) -> np.ndarray:
    x = np.empty((len(rows), post_vectors.shape[1] * 2 + n_layers + len(EXTRAS)), dtype=np.float32)
    for i, r in enumerate(rows):
        mentions = [m for m in matcher.find_spans(r["text"]) if m.org == r["org"]]
        cues = extras(r["text"], mentions, keyword_terms(profiles[r["org"]].context))
        x[i] = features(post_vectors[i:i + 1], org_vectors[r["org"]], n_layers, cues)[0]
    return x


def _logreg(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=SEED)


# The text cues are two columns among some 2,300; scaled up after standardising,
# the L2 penalty lets them carry the weight their evidence supports (a lower-case
# "gnista" is the word on every training pair) instead of drowning them.
CUE_SCALE = 5.0


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised columns, cues scaled by CUE_SCALE; returns x, mean and the divisor."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    std[-len(EXTRAS):] /= CUE_SCALE
    return (x - mean) / std, mean, std


def fit_relevance(x: np.ndarray, y: np.ndarray, *, encoder_name: str, layers: tuple[int, ...], version: str,
                  progress: Callable[[str], None] = print) -> RelevanceHead:
    """Regularisation and threshold chosen on out-of-fold predictions (five folds);
    the standardisation is folded into the weights, so serving is one dot product."""
    from .fit import tune_threshold

    xs, mean, std = _standardise(x)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    best = (-1.0, C_GRID[0], 0.5)
    for c in C_GRID:
        oof = np.zeros(len(y))
        for tr, va in folds.split(xs, y):
            oof[va] = _logreg(c).fit(xs[tr], y[tr]).predict_proba(xs[va])[:, 1]
        t = tune_threshold(oof, y)
        pred = oof >= t
        tp = float((pred & (y == 1)).sum())
        f1 = 2 * tp / (pred.sum() + (y == 1).sum())
        progress(f"  relevance C={c:g}: threshold {t:.2f}, cross-validated F1 {f1:.3f}")
        if f1 > best[0] + 1e-9:
            best = (f1, c, t)
    f1, c, t = best
    model = _logreg(c).fit(xs, y)
    w = model.coef_[0] / std
    b = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
    return RelevanceHead(version=version, encoder=encoder_name, layers=tuple(layers),
                         weights=w.astype(np.float32), bias=b, threshold=t)


def _training_matrix(encoder, progress: Callable[[str], None]):
    """The head's training pairs, their features and labels."""
    orgs = load_watchlist()
    matcher, profiles = matcher_and_profiles(orgs)
    rows = training_rows(load_pairs("train"), matcher, profiles)
    y = np.array([int(r["about"]) for r in rows])
    by_name = {p.name: p for p in profiles}
    judged = sorted({r["org"] for r in rows})
    org_vecs = dict(zip(judged, _embed(encoder, [profile_text(by_name[o].description, by_name[o].context)
                                                 for o in judged], progress)))
    posts = _embed(encoder, [r["text"] for r in rows], progress)
    return orgs, rows, pair_matrix(rows, posts, org_vecs, by_name, matcher, len(encoder.layers)), y


def train_relevance(encoder, out_dir: Path = DEFAULT_HEADS_DIR,
                    progress: Callable[[str], None] = print) -> RelevanceHead:
    orgs, rows, x, y = _training_matrix(encoder, progress)
    progress(f"relevance head: {len(rows)} training pairs of ambiguous organizations "
             f"({int(y.sum())} about the organization)")
    data_hash = hashlib.sha256(json.dumps([rows, orgs, weights_stamp(encoder.name)],
                                          sort_keys=True).encode()).hexdigest()[:12]
    head = fit_relevance(x, y, encoder_name=encoder.name, layers=encoder.layers,
                         version=f"relevance-{data_hash}", progress=progress)
    path = head.save(out_dir)
    progress(f"wrote {path} ({head.version}, threshold {head.threshold:.2f})")
    return head


def leave_one_org_out(encoder, progress: Callable[[str], None] = print) -> dict:
    """How the head does on an organization it was not trained on: for each ambiguous
    organization, a head fitted (as ``lyssna train`` does) on the others' training
    pairs judges that organization's pairs. An estimate for a user's own organization."""
    _, rows, x, y = _training_matrix(encoder, progress)
    orgs = np.array([r["org"] for r in rows])
    per_org, total = {}, np.zeros(3, dtype=int)
    for org in sorted(set(orgs)):
        fit, held = orgs != org, orgs == org
        head = fit_relevance(x[fit], y[fit], encoder_name=encoder.name, layers=encoder.layers, version="lolo",
                             progress=lambda _: None)
        counted = 1.0 / (1.0 + np.exp(-(x[held] @ head.weights + head.bias))) >= head.threshold
        about = y[held] == 1
        counts = np.array([(counted & about).sum(), (counted & ~about).sum(), (~counted & about).sum()])
        per_org[org] = {"n": int(held.sum()), **_prf(*map(int, counts))}
        total += counts
    return {"per_org": per_org, "overall": {"n": len(rows), **_prf(*map(int, total))}}


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0}


def score_pairs(rows: Sequence[dict], counted: Sequence[bool]) -> dict:
    """Precision/recall/F1 of "counted" against "about": overall, per language,
    for ambiguous names, and recall per organization."""
    def block(idx):
        tp = sum(1 for i in idx if counted[i] and rows[i]["about"])
        fp = sum(1 for i in idx if counted[i] and not rows[i]["about"])
        fn = sum(1 for i in idx if not counted[i] and rows[i]["about"])
        return {"n": len(idx), **_prf(tp, fp, fn)}

    everything = range(len(rows))
    langs = sorted({r["lang"] for r in rows})
    orgs = sorted({r["org"] for r in rows})
    return {
        "overall": block(list(everything)),
        "ambiguous": block([i for i in everything if rows[i]["ambiguous"]]),
        "unambiguous": block([i for i in everything if not rows[i]["ambiguous"]]),
        "per_language": {lang: block([i for i in everything if rows[i]["lang"] == lang]) for lang in langs},
        "per_org": {org: block([i for i in everything if rows[i]["org"] == org]) for org in orgs},
        "errors": [(rows[i].get("id", i), rows[i]["kind"]) for i in everything if counted[i] != rows[i]["about"]],
    }


def evaluate_pairs(encoder, head: RelevanceHead, progress: Callable[[str], None] = print,
                   name: str = "test") -> dict:
    """The served decision on every held-out pair: match (with variants), then the
    relevance head where the name is ambiguous. Needs no retraining to rerun."""
    orgs = load_watchlist()
    matcher, profiles = matcher_and_profiles(orgs)
    rows = load_pairs(name)
    decider = OrgDecider(profiles, head, lambda texts: _embed(encoder, texts, progress))
    vectors = _embed(encoder, [r["text"] for r in rows], progress)
    counted = []
    for r, v in zip(rows, vectors):
        decision = decider.decide(r["text"], matcher.find_spans(r["text"]), v)
        counted.append(r["org"] in decision.orgs)
    return score_pairs(rows, counted)


PAIRS_START, PAIRS_END = "<!-- orgpairs:start -->", "<!-- orgpairs:end -->"


def render_pairs(result: dict, head: RelevanceHead, path: str, unseen: dict | None = None) -> str:
    """The model card's watchlist-precision figures (between PAIRS_START and PAIRS_END)."""
    o, a = result["overall"], result["ambiguous"]
    lines = [f"Held-out `data/orgpairs.test.jsonl`: {o['n']} (post, organization) pairs, {a['n']} of them for "
             f"ambiguous names; served path ({path}), relevance head `{head.version}` (threshold "
             f"{head.threshold:.2f}). A pair is right when the organization is counted exactly when the post is "
             "about it. Recompute with `make evaluate`.", "",
             "| pairs | n | precision | recall | F1 |", "| --- | --- | --- | --- | --- |"]
    rows = [("all", o), ("ambiguous names", a), ("unambiguous names", result["unambiguous"])]
    rows += [(f"lang {lang}", r) for lang, r in result["per_language"].items()]
    for name, r in rows:
        lines.append(f"| {name} | {r['n']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    lines += ["", "| organization | pairs | about it | recall | counted wrongly |", "| --- | --- | --- | --- | --- |"]
    for org, r in result["per_org"].items():
        lines.append(f"| {org} | {r['n']} | {r['tp'] + r['fn']} | {r['recall']:.3f} | {r['fp']} |")
    if result["errors"]:
        lines += ["", "Wrong pairs (id, kind): " + ", ".join(f"{i} ({k})" for i, k in result["errors"]) + "."]
    if unseen:
        o = unseen["overall"]
        lines += ["", "**An organization the head never saw** (leave one organization out over the training "
                  "pairs of the ambiguous ones: a head fitted on the others judges its pairs, fp32): "
                  f"precision {o['precision']:.3f}, recall {o['recall']:.3f}, F1 {o['f1']:.3f} over {o['n']} pairs.",
                  "", "| left out | pairs | precision | recall | F1 |", "| --- | --- | --- | --- | --- |"]
        for org, r in unseen["per_org"].items():
            lines.append(f"| {org} | {r['n']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    return "\n".join(lines)


def replace_pairs_block(card: str, text: str) -> str:
    if PAIRS_START not in card or PAIRS_END not in card:
        raise SystemExit(f"the model card lacks the {PAIRS_START} ... {PAIRS_END} markers")
    head, rest = card.split(PAIRS_START, 1)
    return f"{head}{PAIRS_START}\n{text}\n{PAIRS_END}{rest.split(PAIRS_END, 1)[1]}"
