"""Hostile posts: time per post of mention matching and language id.

Every text of bench/adversarial_posts.py (worst cases for each pattern and loop
that sees post text, each at the 20,000-character limit) goes through the
functions the classify worker calls on it: ``MentionMatcher.find_spans`` with
the example watchlist and ``langid.detect_language``. A post's time is the
median of several repeats; the figures are the slowest post's time, the median
over posts, and how many posts miss the goal. Before the patterns were made
linear, "Acme." * 800 (4,000 characters) alone took 60 s.

Also timed, for the record: the tokenizer call of the encoder, the only other
step that reads the whole text (the transformer sees at most its first 256
tokens, so its cost does not depend on what a post holds).

    python -m bench.bench_adversarial [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.adversarial_posts import corpus
from lyssna.classify.training.dataset import load_watchlist
from lyssna.classify.encoder import PREFIX, resolve_model_path
from lyssna.classify.langid import detect_language
from lyssna.classify.mentions import MentionMatcher
from lyssna.common.config import load_settings

GOAL_MS = 50.0


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(load_settings(None, env={}).classify.model))


def run(args=None) -> dict:
    repeats = getattr(args, "repeats", 5)
    posts = corpus()
    matcher = MentionMatcher(load_watchlist())
    tokenizer = _tokenizer()
    # Warm-up: lingua builds its short- and long-text detectors on first use.
    detect_language("warm up the short text detector please")
    detect_language("warm up the long text detector " * 10)

    per_post = {}
    tokenize: dict[str, float] = {}
    for p in posts:
        per_post[p.name] = _median_ms(lambda: (matcher.find_spans(p.text), detect_language(p.text)), repeats)
        if p.utf8:  # a text with lone surrogates never reaches the encoder: the Post contract refuses it
            tokenize[p.name] = _median_ms(lambda: tokenizer([PREFIX + p.text], truncation=True, max_length=256),
                                          repeats)
    slowest = max(per_post, key=per_post.__getitem__)
    top = sorted(per_post.items(), key=lambda kv: -kv[1])[:5]
    return {
        "posts": len(posts), "chars_per_post": max(len(p.text) for p in posts), "repeats": repeats,
        "goal_ms": GOAL_MS,
        "slowest_post": slowest, "slowest_ms": per_post[slowest],
        "median_ms": round(statistics.median(per_post.values()), 2),
        "over_goal": sum(v >= GOAL_MS for v in per_post.values()),
        "top5_ms": dict(top),
        "tokenize_max_ms": max(tokenize.values()), "tokenize_median_ms": round(statistics.median(tokenize.values()), 2),
        "per_post_ms": per_post,
    }


def section(r: dict) -> list[str]:
    """This benchmark's part of BENCHMARKS.md (bench/__main__.py adds the machine line)."""
    top = ", ".join(f"{name} {ms}" for name, ms in r["top5_ms"].items())
    return ["## Hostile posts: matching and language id per post", "",
            f"{r['posts']} adversarial posts of {r['chars_per_post']:,} characters (bench/adversarial_posts.py: "
            "worst cases for every pattern and loop that sees post text), each through "
            "`MentionMatcher.find_spans` (example watchlist) and `detect_language`; a post's time is the "
            f"median of {r['repeats']} repeats. Before the link patterns were made linear, \"Acme.\" * 800 "
            "(4,000 characters) alone took 60 s.", "",
            "| slowest post | median post | posts over the goal |", "| --- | --- | --- |",
            f"| {r['slowest_ms']} ms ({r['slowest_post']}) | {r['median_ms']} ms | {r['over_goal']} of {r['posts']} |",
            "", f"**Slowest post: {r['slowest_ms']} ms** (goal < {r['goal_ms']:.0f} ms for every post). "
            f"Slowest five, ms: {top}.", "",
            f"The encoder's tokenizer on the same texts (truncated to 256 tokens, as classify calls it): "
            f"slowest {r['tokenize_max_ms']} ms, median {r['tokenize_median_ms']} ms; the forward pass after it "
            "sees at most 256 tokens whatever the post holds.", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
