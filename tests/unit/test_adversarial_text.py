"""Hostile post texts through the real matching and language-id functions.

Each text of the adversarial corpus (bench/adversarial_posts.py) is a worst case
for a pattern or loop that sees post text, at the longest length a post may
have. No timing thresholds: under quadratic code these tests do not finish (the
old URL/e-mail pattern took minutes on "Acme." * 4000), which fails the run;
under linear code each post takes milliseconds. What is checked is that the
answers stay right on such input.
"""

from __future__ import annotations

import pytest

from bench.adversarial_posts import WATCH_NAME, WORST, by_name, corpus
from lyssna.classify import langid, mentions
from lyssna.classify.training.dataset import load_watchlist
from lyssna.classify.langid import SUPPORTED, UNDETERMINED, detect_language, detect_languages
from lyssna.classify.mentions import MentionMatcher, Organization
from lyssna.classify.textspans import link_spans, overlaps
from lyssna.common.contracts import MAX_TEXT_CHARS

CORPUS = corpus()
IDS = [p.name for p in CORPUS]
WATCHLIST = load_watchlist()
ACME = next(o.name for o in WATCHLIST if WATCH_NAME in (o.name, *o.aliases))


@pytest.fixture(scope="module")
def matcher() -> MentionMatcher:
    return MentionMatcher(WATCHLIST)


def test_corpus_is_full_length_and_named_once() -> None:
    assert len(set(IDS)) == len(IDS)
    # Shorter texts would hide a quadratic pass behind small numbers.
    assert {len(p.text) for p in CORPUS} == {MAX_TEXT_CHARS}
    # Built around another name (the end-to-end test's watchlist), still full length.
    assert {len(p.text) for p in corpus("Alfakraft")} == {MAX_TEXT_CHARS}


@pytest.mark.parametrize("post", CORPUS, ids=IDS)
def test_hostile_post_mentions_are_found_and_consistent(matcher: MentionMatcher, post) -> None:
    spans = matcher.find_spans(post.text)
    for m in spans:
        assert 0 <= m.start < m.end <= len(post.text)
        assert post.text[m.start : m.end] == m.surface
    assert [m.start for m in spans] == sorted(m.start for m in spans)
    if post.mentions_name is not None:
        assert (ACME in {m.org for m in spans}) is post.mentions_name


@pytest.mark.parametrize("post", CORPUS, ids=IDS)
def test_hostile_post_gets_a_language_or_und(post) -> None:
    assert detect_language(post.text) in SUPPORTED | {UNDETERMINED}


def test_hostile_posts_in_one_batch_match_one_by_one() -> None:
    texts = [p.text for p in CORPUS]
    assert detect_languages(texts) == [detect_language(t) for t in texts]


@pytest.mark.parametrize("name", [WATCH_NAME, "Alfakraft"])
def test_worst_post_finds_every_name(name: str) -> None:
    # "Acme." * 4000: every one of the 4,000 names is a mention, none is a link.
    text = by_name(WORST, name).text
    spans = MentionMatcher([Organization(name)]).find_spans(text)
    assert len(spans) == text.count(f"{name}.") and {m.org for m in spans} == {name}


# --------------------------------------------------------------------------- #
# Links: one definition, found once per text
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["www-run", "http-run", "domain-long-valid", "acme-se-run",
                                  "email-then-dot-run", "domain-path-run"])
def test_a_text_that_is_one_link_is_all_link(name: str) -> None:
    text = by_name(name).text
    [(start, end)] = link_spans(text)
    # A full stop after a bare domain ends the sentence, not the link.
    assert start == 0 and text[end:] in ("", ".")
    # Nothing is left for language id to judge.
    assert langid._clean(text) is None


@pytest.mark.parametrize("name", ["acme-dot-run", "hyphen-run", "dot-run", "at-run", "plus-run", "dot-hyphen-run"])
def test_runs_that_only_look_like_links_hold_none(name: str) -> None:
    assert link_spans(by_name(name).text) == []


def test_email_like_run_is_a_chain_of_addresses() -> None:
    text = by_name("email-like-run").text  # "x@y.x@y.x@y." ...
    spans = link_spans(text)
    assert spans and all(text[s:e].count("@") == 1 for s, e in spans)


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("mejla jobb@nordvik.se idag", ["jobb@nordvik.se"]),
        ("first.last+hr@acme-robotics.co.uk.", ["first.last+hr@acme-robotics.co.uk"]),
        ("se https://nordvik.se/jobb?q=1 och www.acme.app", ["https://nordvik.se/jobb?q=1", "www.acme.app"]),
        ("NORDVIK.SE, acme.io/karriär och acme.info", ["NORDVIK.SE", "acme.io/karriär", "acme.info"]),
        ('<a href="https://x.se">', ["https://x.se"]),
        ("Acme. Nordvik.Sedan", []),
        ("@acme.se", []),  # a handle followed by text, not a domain
    ],
)
def test_link_spans(text: str, links: list[str]) -> None:
    assert [text[s:e] for s, e in link_spans(text)] == links


def test_overlaps_is_half_open() -> None:
    spans = [(2, 5), (10, 12)]
    assert [overlaps(spans, s, e) for s, e in [(0, 2), (0, 3), (4, 6), (5, 10), (11, 30), (12, 13)]] == \
        [False, True, True, False, True, False]
    assert overlaps([], 0, 1) is False


def test_links_are_found_once_per_text(monkeypatch: pytest.MonkeyPatch, matcher: MentionMatcher) -> None:
    calls = []

    def counting(text: str):
        calls.append(len(text))
        return link_spans(text)

    monkeypatch.setattr(mentions, "link_spans", counting)
    text = "Acme. " * 500 + "https://acme.se/jobb"
    assert len(matcher.find_spans(text)) == 500
    assert calls == [len(text)]


def test_langid_strips_the_same_links_as_mentions() -> None:
    # TLDs and case the mention matcher always knew; language id used to keep
    # them as words ("acme", "app", "NORDVIK", "SE").
    text = "läs mer på acme.app och NORDVIK.SE eller hr@acme.co.uk nu"
    assert langid._clean(text) == "läs mer på och eller nu"
