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
from .dataset import load_mention_rows, load_watchlist
from .fit import evaluate

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
    if write_card:
        card = MODEL_CARD.read_text(encoding="utf-8")
        if START not in card or END not in card:
            raise SystemExit(f"{MODEL_CARD} lacks the {START} ... {END} markers")
        new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}",
                     card, flags=re.S)
        MODEL_CARD.write_text(new, encoding="utf-8")
        progress(f"updated {MODEL_CARD}")
    return text


def paths_here(model: str, layers) -> list[str]:
    """Every encoder path this machine can run, fp32 first (the reference), the served one last."""
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
