"""Watchlist precision: what the variants and the relevance step add per post.

The posts of the held-out org pairs that name a watched organization
(services/classify/training/data/orgpairs.test.jsonl, mention-bearing by
construction) with their watchlist (orgpairs.watchlist.yaml: eight ambiguous
names judged by the relevance head, six distinctive ones matched with typos,
Nordic spellings and "&" written out). Timed per post, medians over repeats:

  (a) the classify path: ``Classifier.classify_texts`` on the posts (language,
      matching, encoder, heads, the decision step), in batches as served;
  (b) matching with variants (``find_spans``) against the same matcher with its
      typo pass switched off: the variants' extra cost (the extra spellings are
      automaton terms and cost nothing per post);
  (c) the decision step alone (queries, relevance head on the post's vector).

The extra cost is (b) + (c), reported as a share of (a).

    python -m bench.bench_mentions [--repeats 3] [--posts 300]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json

from bench.bench_adversarial import _median_ms
from lyssna.classify.classifier import Classifier
from lyssna.classify.heads import Heads
from lyssna.classify.training.orgpairs import load_pairs, load_watchlist
from lyssna.classify.variants import TypoIndex
from lyssna.common.config import Settings, load_settings

GOAL_SHARE = 0.10


def _settings() -> Settings:
    base = load_settings(None, env={}).model_dump()
    base["organizations"] = load_watchlist()
    return Settings.model_validate(base)


def _median_s(fn, repeats: int) -> float:
    return _median_ms(fn, repeats) / 1000


def run(args=None) -> dict:
    repeats = getattr(args, "repeats", 3)
    n = getattr(args, "posts", 300)
    settings = _settings()
    classifier = Classifier.from_settings(settings)
    matcher = classifier.matcher
    texts = [r["text"] for r in load_pairs("test") if matcher.find(r["text"])]
    texts = list(itertools.islice(itertools.cycle(texts), n))
    classifier.warm_up()

    def classify():
        for start in range(0, len(texts), classifier.batch_size):
            classifier.classify_texts(texts[start:start + classifier.batch_size])

    path_s = _median_s(classify, repeats)

    no_typos = copy.copy(matcher)
    no_typos._typos = TypoIndex([])  # the same automaton (spellings included), no typo pass
    match_s = _median_s(lambda: [matcher.find_spans(t) for t in texts], repeats)
    exact_s = _median_s(lambda: [no_typos.find_spans(t) for t in texts], repeats)

    spans = [matcher.find_spans(t) for t in texts]
    vectors = classifier.encoder.embed(texts, classifier.batch_size)
    decider = classifier.decider
    judged = sum(1 for t, s, v in zip(texts, spans, vectors) if decider.decide(t, s, v).relevance)
    decide_s = _median_s(lambda: [decider.decide(t, s, v) for t, s, v in zip(texts, spans, vectors)], repeats)

    per_post = lambda s: round(s / len(texts) * 1000, 3)  # noqa: E731  ms per post
    extra = max(0.0, match_s - exact_s) + decide_s
    return {
        "posts": len(texts), "repeats": repeats, "encoder": f"{classifier.encoder.name}@{classifier.encoder.precision}",
        "heads": Heads.load().version, "judged_by_the_head": judged,
        "classify_ms_per_post": per_post(path_s),
        "match_ms_per_post": per_post(match_s), "match_without_typos_ms_per_post": per_post(exact_s),
        "decide_ms_per_post": per_post(decide_s),
        "extra_ms_per_post": per_post(extra),
        "extra_share": round(extra / path_s, 4), "goal_share": GOAL_SHARE,
    }


def section(r: dict) -> list[str]:
    """This benchmark's part of BENCHMARKS.md (bench/__main__.py adds the machine line)."""
    return ["## Watchlist precision: the extra cost per mention-bearing post", "",
            f"{r['posts']} posts that name a watched organization (the held-out org pairs, cycled), the org-pairs "
            f"watchlist (eight ambiguous names), {r['repeats']} repeats, medians; encoder {r['encoder']}. "
            f"{r['judged_by_the_head']} of the posts are judged by the relevance head.", "",
            "| step | ms per post |", "| --- | --- |",
            f"| (a) classify path (language, matching, encoder, heads, decision) | {r['classify_ms_per_post']} |",
            f"| matching with typos | {r['match_ms_per_post']} |",
            f"| matching without the typo pass | {r['match_without_typos_ms_per_post']} |",
            f"| decision step (queries, relevance head) | {r['decide_ms_per_post']} |", "",
            f"**Extra cost: {r['extra_ms_per_post']} ms per post, {r['extra_share']:.1%} of the classify path** "
            f"(goal < {r['goal_share']:.0%}).", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--posts", type=int, default=300)
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
