"""Erasure's pure parts: whom a target matches, and what the report says remains in Kafka."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.alerts.erasure import (
    ErasureReport, Target, author_target, format_report, kafka_remainders, lyssna_topics, post_target,
)
from lyssna.common.config import Settings
from lyssna.common.contracts import ClassifiedPost, ModelInfo, SamplePost
from lyssna.common.pseudonyms import AUTHOR_KEY_VAR, AuthorKeyError, parse_author_keys, pseudonym

KEYS = f"k2:{'n' * 40},k1:{'o' * 40}"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _post(author: str | None, post_id: str = "p1") -> ClassifiedPost:
    return ClassifiedPost(id=post_id, source="t", author=author, text="x", lang="sv", sentiment="neutral",
                          model=ModelInfo(encoder="e", heads="h"))


def test_an_author_is_found_under_every_configured_key_and_any_spelling_of_the_handle():
    target = author_target("@Anna ", Settings(), {AUTHOR_KEY_VAR: KEYS})
    old, new = (pseudonym("anna", k) for k in reversed(parse_author_keys(KEYS)))
    assert target.wrote(_post(old)) and target.wrote(_post(new))
    assert not target.wrote(_post(pseudonym("bo", parse_author_keys(KEYS)[0])))
    assert not target.wrote(_post(None))


def test_kept_handles_match_whatever_the_case_or_at_sign():
    target = author_target("anna", Settings.model_validate({"privacy": {"authors": "keep"}}), {})
    assert target.wrote(_post("@ANNA")) and target.wrote(_post("anna"))
    assert not target.wrote(_post("annabel"))


def test_pseudonymous_authors_without_a_key_say_how_to_fix_it():
    with pytest.raises(AuthorKeyError, match=AUTHOR_KEY_VAR):
        author_target("anna", Settings(), {})


def test_samples_of_found_posts_are_dropped_and_others_kept():
    target = Target("author", frozenset({"anon-x"})).with_posts(["p1"])
    samples = [SamplePost(id="p1", text="a"), SamplePost(id="p2", text="b")]
    assert target.keep_samples(samples) == [samples[1]]
    assert post_target("p2").keep_samples(samples) == [samples[0]]


def test_kafka_copies_are_gone_by_retention_plus_one_segment():
    remainders = {r.topic: r for r in kafka_remainders({"a": 2 * 86_400_000, "b": 3_600_000, "c": -1}, NOW)}
    assert remainders["a"].gone_by == NOW + timedelta(days=3)  # 2d + a segment of at most 1d
    assert remainders["b"].gone_by == NOW + timedelta(hours=2)  # 1h + a segment of 1h
    assert remainders["c"].retention == "forever"


def test_the_report_names_every_topic_holding_post_text():
    s = Settings()
    assert set(lyssna_topics(s)) == {"lyssna.posts.raw", "lyssna.posts.classified", "lyssna.deadletter",
                                     "lyssna.alerts.events", "lyssna-alerts-mentions"}
    report = ErasureReport(target="post", erased_at=NOW, post_ids=["p1"], sample_pool_posts=1, event_samples=2,
                           events=1, pending_event_samples=0, active_alert_samples=0, author_index_entries=0,
                           dedup_entries_kept=1, kafka=kafka_remainders({"lyssna.posts.raw": 86_400_000}, NOW),
                           notes=[])
    text = format_report(report)
    assert "1 post(s) from the sample pool, 2 sample(s) from 1 stored alert event(s)" in text
    assert "lyssna.posts.raw (retention 1d): gone by 2026-12-03 09:00 UTC" in text
