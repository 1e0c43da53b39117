"""BENCHMARKS.md keeps the figures of benchmarks a partial rerun did not repeat."""

from bench.__main__ import merge_sections, render
from bench.bench_classify import goal_ratio

PREVIOUS = """# Benchmarks

Intro.

## Ingest

old ingest figures

## Classifier

old classifier figures

## Hostile posts

old hostile figures
"""


def test_a_rerun_of_one_benchmark_replaces_its_section_and_keeps_the_others_in_place():
    fresh = "# Benchmarks\n\nIntro.\n\n## Classifier\n\nnew classifier figures\n"
    merged = merge_sections(PREVIOUS, fresh)
    assert merged == PREVIOUS.replace("old classifier figures", "new classifier figures")


def test_a_new_section_is_added_and_a_first_report_is_written_whole():
    fresh = "# Benchmarks\n\nIntro.\n\n## Scale-out\n\nfigures\n"
    assert merge_sections(PREVIOUS, fresh).endswith("## Hostile posts\n\nold hostile figures\n\n## Scale-out\n\nfigures\n")
    assert merge_sections("", fresh) == fresh


def test_the_speed_goal_is_the_one_set_for_the_cpu_kind_and_none_is_claimed_where_none_is_set():
    assert goal_ratio(frozenset({"avx2", "fma"})) == 5.0
    assert goal_ratio(frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})) == 10.0
    assert goal_ratio(frozenset({"avx2", "avx512f", "avx512_bf16"})) is None
    row = {"posts": 2000, "repeats": 5, "threads": 2, "baseline_posts_per_s": 40.0, "lyssna_posts_per_s": 300.0,
           "ratio": 7.5, "ratios_per_repeat": [7.5], "lyssna_precision": "bf16",
           "baseline_topic_macro_f1": 0.9, "baseline_sentiment_macro_f1": 0.9,
           "lyssna_topic_macro_f1": 0.9, "lyssna_sentiment_macro_f1": 0.9,
           "machine": dict.fromkeys(("cpu", "cores", "memory", "python", "kernel", "commit", "date"), "x")}
    assert "goal on this kind of CPU ≥ 10," in render({"classify": {**row, "goal_ratio": 10.0}})
    assert "no goal is set for this kind of CPU" in render({"classify": {**row, "goal_ratio": None}})
