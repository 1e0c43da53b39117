"""BENCHMARKS.md keeps the figures of benchmarks a partial rerun did not repeat."""

from bench.__main__ import merge_sections

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
