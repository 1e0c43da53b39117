"""``lyssna evaluate``: the held-out figures the model card quotes, recomputed."""

from __future__ import annotations


import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lyssna.common.config import Settings

from ..encoder import Encoder, bf16_supported, choose_precision, cpu_flags, resolve_model_path
from ..onnx_int8 import int8_ready
from ..heads import Heads
from ..mentions import MentionMatcher
from ..relevance import RelevanceHead
from .dataset import load_mention_rows, load_watchlist
from .fit import evaluate
from .orgpairs import evaluate_pairs, leave_one_org_out, render_pairs, replace_pairs_block

MODEL_CARD = Path(__file__).resolve().parents[1] / "MODEL_CARD.md"  # lyssna/classify/MODEL_CARD.md
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def run_evaluation(settings: Settings, *, write_card: bool = False,
                   progress: Callable[[str], None] = print) -> str:
    heads = Heads.load(settings.classify.heads)
    results = {}
    for precision in paths_here(settings.classify.model, heads.layers):
        encoder = Encoder(settings.classify.model, precision=precision, layers=heads.layers)
        results[precision] = evaluate(encoder, heads, progress)
    mentions = evaluate_mentions(MentionMatcher(load_watchlist()), load_mention_rows())
    text = render(heads, results, mentions)
    # The watchlist decision on the served path (the loop's last encoder).
    relevance = RelevanceHead.load(settings.classify.heads)
    fp32 = Encoder(settings.classify.model, precision="fp32", layers=heads.layers)
    pairs = render_pairs(evaluate_pairs(encoder, relevance, progress), relevance, precision,
                         leave_one_org_out(fp32, progress))
    decisions = render_decisions(decision_figures(encoder, heads, progress))
    if write_card:
        card = MODEL_CARD.read_text(encoding="utf-8")
        if START not in card or END not in card:
            raise SystemExit(f"{MODEL_CARD} lacks the {START} ... {END} markers")
        new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}",
                     card, flags=re.S)
        MODEL_CARD.write_text(replace_decisions_block(replace_pairs_block(new, pairs), decisions), encoding="utf-8")
        progress(f"updated {MODEL_CARD}")
    return f"{text}\n\n{pairs}\n\n{decisions}"


def paths_here(model: str, layers) -> list[str]:
    """Every encoder path this machine can run, fp32 first (the reference), the served one last:
    the one served to full batches (``scope: all``), whose decisions the card's tables
    describe; under ``scope: mentions`` a Zen 4 serves int8, scored in the same table."""
    paths = ["fp32"] + (["bf16"] if bf16_supported() else [])
    if int8_ready(resolve_model_path(model), layers):
        paths.append("int8")
    served = choose_precision(cpu_flags(), "int8" in paths)
    return [p for p in paths if p != served] + [served]


def render(heads: Heads, results: dict[str, dict], mentions: dict) -> str:
    lines = [f"Heads `{heads.version}`, encoder `{heads.encoder}` (layers {list(heads.layers)}). "
             f"Held-out test split: {next(iter(results.values()))['overall']['n']} posts, "
             "never used for training or tuning. Recompute with `make evaluate`.", ""]
    lines += ["| path | topic macro-F1 | sentiment macro-F1 |", "| --- | --- | --- |"]
    for precision, r in results.items():
        o = r["overall"]
        lines.append(f"| {precision} | {o['topic_macro_f1']:.3f} | {o['sentiment_macro_f1']:.3f} |")
    name = list(results)[-1]  # paths_here puts the served path last
    main = results[name]
    lines += ["", f"Per language ({name}, the served path):", "",
              "| lang | posts | topic macro-F1 | sentiment macro-F1 |", "| --- | --- | --- | --- |"]
    for lang, r in main["per_language"].items():
        lines.append(f"| {lang} | {r['n']} | {r['topic_macro_f1']:.3f} | {r['sentiment_macro_f1']:.3f} |")
    lines += ["", f"Per label ({name}):", "", "| label | support | F1 | threshold |", "| --- | --- | --- | --- |"]
    for label, r in main["per_label"].items():
        lines.append(f"| {label} | {r['support']} | {r['f1']:.3f} | {r.get('threshold', '')} |")
    lines += ["", f"Mention matching on `data/mentions_test.jsonl` ({mentions['rows']} texts): "
              f"precision {mentions['precision']:.3f}, recall {mentions['recall']:.3f}, "
              f"F1 {mentions['f1']:.3f}."]
    return "\n".join(lines)


def evaluate_mentions(matcher: MentionMatcher, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Micro precision/recall/F1 over (row, org) pairs.

    ``rows`` hold ``{"text": str, "orgs": [canonical names]}``. The result also
    lists the false positives/negatives as ``(row_index, org)`` for debugging.
    """
    tp = 0
    false_pos: list[tuple[int, str]] = []
    false_neg: list[tuple[int, str]] = []
    n_rows = 0
    for i, row in enumerate(rows):
        n_rows += 1
        gold = set(row["orgs"])
        pred = set(matcher.find(row["text"]))
        tp += len(gold & pred)
        false_pos.extend((i, o) for o in sorted(pred - gold))
        false_neg.extend((i, o) for o in sorted(gold - pred))
    fp, fn = len(false_pos), len(false_neg)
    # With nothing predicted (or nothing to find) there is nothing to be wrong
    # about, so the empty ratio counts as perfect rather than undefined.
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "rows": n_rows,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positives": false_pos,
        "false_negatives": false_neg,
    }


# ------------------------------------------------- decisions: rule conjunctions and calibration

DECISIONS_START, DECISIONS_END = "<!-- decisions:start -->", "<!-- decisions:end -->"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "config" / "lyssna.example.yaml"
MIN_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
RELIABILITY_BINS = 10


def example_conjunctions(path: Path = EXAMPLE_CONFIG) -> list[tuple[str, str]]:
    """(topic, sentiment) of the example rules that have both: what an alert counts.
    ``employee_satisfaction`` + ``negative`` always (the acceptance figure)."""
    import yaml

    rules = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("rules") or [] if path.is_file() else []
    found = [(r["topic"], r["sentiment"]) for r in rules if r.get("topic") and r.get("sentiment")]
    return list(dict.fromkeys([("employee_satisfaction", "negative"), *found]))


def _counted(p, topic: str, sentiment: str, min_score: float | None) -> bool:
    """Whether the rule engine counts a post with this prediction (lyssna.alerts.rules:
    the label, and with min_score both scores at least it, in the same steps)."""
    from lyssna.alerts.rules import score_level

    if topic not in p.topics or p.sentiment != sentiment:
        return False
    need = None if min_score is None else score_level(min_score)
    return need is None or (score_level(p.topic_scores[topic]) >= need
                            and score_level(p.sentiment_scores[sentiment]) >= need)


def precision_recall(gold: list[bool], counted: list[bool]) -> dict[str, float | int | None]:
    tp = sum(g and c for g, c in zip(gold, counted))
    n_counted, n_gold = sum(counted), sum(gold)
    return {"precision": tp / n_counted if n_counted else None, "recall": tp / n_gold if n_gold else None,
            "counted": n_counted, "gold": n_gold}


def conjunction_figures(examples, predictions, topic: str, sentiment: str,
                        min_scores=MIN_SCORES) -> dict[str, dict]:
    """Per language (and ``all``): precision/recall of "topic + sentiment" as a rule counts
    it, at the shipped thresholds (key None) and at each min_score."""
    gold = [topic in e.topics and e.sentiment == sentiment for e in examples]
    out = {}
    for lang in ["all", *sorted({e.lang for e in examples})]:
        idx = [i for i, e in enumerate(examples) if lang == "all" or e.lang == lang]
        out[lang] = {m: precision_recall([gold[i] for i in idx],
                                         [_counted(predictions[i], topic, sentiment, m) for i in idx])
                     for m in (None, *min_scores)}
    return out


def second_labeller_figures(examples, review: Mapping[str, tuple[Iterable[str], str]], topic: str,
                            sentiment: str) -> dict[str, float | int | None]:
    """Precision/recall of an independent second labeller against the labels, on the
    posts it read: the yardstick for the model's figures, since no model can be
    expected to agree with the labels more than two careful readers of the guide do."""
    read = [e for e in examples if e.id in review]
    gold = [topic in e.topics and e.sentiment == sentiment for e in read]
    second = [topic in review[e.id][0] and review[e.id][1] == sentiment for e in read]
    return {**precision_recall(gold, second), "read": len(read)}


def reliability(scores: Iterable[float], outcomes: Iterable[bool], bins: int = RELIABILITY_BINS) -> dict:
    """Binned predicted score against the observed frequency, and the expected
    calibration error (the bins' |score - frequency| weighted by their size)."""
    rows = [[0, 0.0, 0] for _ in range(bins)]
    for s, y in zip(scores, outcomes):
        row = rows[min(int(s * bins), bins - 1)]
        row[0] += 1
        row[1] += s
        row[2] += bool(y)
    total = sum(r[0] for r in rows)
    table = [{"bin": (k / bins, (k + 1) / bins), "n": n, "mean_score": s / n if n else None,
              "observed": pos / n if n else None} for k, (n, s, pos) in enumerate(rows)]
    ece = sum(r["n"] * abs(r["mean_score"] - r["observed"]) for r in table if r["n"]) / total if total else 0.0
    return {"bins": table, "ece": ece, "n": total}


def decision_figures(encoder, heads: Heads, progress: Callable[[str], None] = print) -> dict:
    """The conjunction tables and the reliability of the scores on the held-out split."""
    from lyssna.common.contracts import LABELS

    from .fit import embed_examples, split
    from .dataset import load_examples, load_review

    test = split(load_examples())["test"]
    preds = heads.predict(embed_examples(encoder, test, progress))
    rules = example_conjunctions()
    conj = {f"{t}+{s}": conjunction_figures(test, preds, t, s) for t, s in rules}
    review = load_review()
    second = {f"{t}+{s}": second_labeller_figures(test, review, t, s) for t, s in rules} if review else {}
    topic_rel = reliability((p.topic_scores[label] for p in preds for label in LABELS),
                            (label in e.topics for e in test for label in LABELS))
    # Sentiment: the winning class's probability against how often it is right.
    sent_rel = reliability((max(p.sentiment_scores.values()) for p in preds),
                           (p.sentiment == e.sentiment for p, e in zip(preds, test)))
    return {"path": encoder.precision, "n": len(test), "conjunctions": conj,
            "topic_reliability": topic_rel, "sentiment_reliability": sent_rel, "second_labeller": second}


def _pr(cell: dict) -> str:
    p, r = cell["precision"], cell["recall"]
    return f"{'–' if p is None else f'{p:.2f}'} / {'–' if r is None else f'{r:.2f}'}"


def render_decisions(fig: dict) -> str:
    lines = [f"On the held-out split ({fig['n']} posts), served path `{fig['path']}`. Recompute with "
             "`make evaluate`.", "",
             "**Rule conjunctions** (what the example rules count): precision / recall of the posts a rule "
             "counts, at the shipped thresholds and at each `min_score` (both scores at least it). "
             "Per language; few positives in a language make its figures coarse.", ""]
    for name, per_lang in fig["conjunctions"].items():
        keys = list(next(iter(per_lang.values())))
        lines += [f"`{name}`:", "",
                  "| lang | posts really so | " + " | ".join("shipped" if m is None else f"min_score {m:g}"
                                                        for m in keys) + " |",
                  "| --- | --- |" + " --- |" * len(keys)]
        for lang, row in per_lang.items():
            lines.append(f"| {lang} | {row[None]['gold']} | " + " | ".join(_pr(row[m]) for m in keys) + " |")
        if name in fig.get("second_labeller", {}):
            cell = fig["second_labeller"][name]
            read = f"these {cell['read']}" if cell["read"] >= fig["n"] else f"{cell['read']} of these {fig['n']}"
            lines += ["", f"Yardstick: a second labeller who read {read} posts blind (the text and "
                      f"the labelling guide only, neither these labels nor any score) scores {_pr(cell)} "
                      "against them (`data/review.test.jsonl`)."]
        lines.append("")
    lines += ["**Reliability** of the scores (binned predicted score against the observed frequency; "
              "ECE = the bins' gap weighted by their size):", "",
              "| score bin | topic scores: n | mean score | observed | sentiment (top class): n | mean score "
              "| observed |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for t, s in zip(fig["topic_reliability"]["bins"], fig["sentiment_reliability"]["bins"]):
        def f(v):
            return "–" if v is None else f"{v:.2f}"
        lines.append(f"| {t['bin'][0]:.1f}–{t['bin'][1]:.1f} | {t['n']} | {f(t['mean_score'])} | "
                     f"{f(t['observed'])} | {s['n']} | {f(s['mean_score'])} | {f(s['observed'])} |")
    lines.append(f"| ECE | | {fig['topic_reliability']['ece']:.3f} | | | "
                 f"{fig['sentiment_reliability']['ece']:.3f} | |")
    return "\n".join(lines)


def replace_decisions_block(card: str, text: str) -> str:
    if DECISIONS_START not in card or DECISIONS_END not in card:
        raise SystemExit(f"{MODEL_CARD} lacks the {DECISIONS_START} ... {DECISIONS_END} markers")
    return re.sub(re.escape(DECISIONS_START) + ".*?" + re.escape(DECISIONS_END),
                  lambda _: f"{DECISIONS_START}\n{text}\n{DECISIONS_END}", card, flags=re.S)
