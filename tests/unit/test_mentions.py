"""Unit tests for lyssna.classify.mentions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lyssna.classify.mentions import (
    Mention,
    MentionMatcher,
    Organization,
    fold,
)
from lyssna.classify.training.dataset import load_watchlist
from lyssna.classify.training.evaluation import evaluate_mentions

REPO_ROOT = Path(__file__).resolve().parents[2]
MENTIONS_TEST_SET = REPO_ROOT / "services" / "classify" / "training" / "data" / "mentions_test.jsonl"

# The invented watchlist the data files refer to (services/classify/training/data/watchlist.yaml).
WATCHLIST_EXAMPLE = load_watchlist()

NORDVIK = "Nordvik Energi"
KVARNBY = "Kvarnby Bank"
FJALLHEM = "Fjällhem Bostäder"
ACME = "Acme Robotics"
BRUCKNER = "Brückner Logistik"
SAGA = "Saga Vård"
LUMO = "Lumo Telecom"
HAVSBRIS = "Havsbris Livs"


@pytest.fixture(scope="module")
def matcher() -> MentionMatcher:
    return MentionMatcher(WATCHLIST_EXAMPLE)


# --------------------------------------------------------------------------- #
# Terms: names, aliases, handles, hashtags
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jobbar på Nordvik Energi sedan 2019", [NORDVIK]),
        ("Jobbar på Nordvik sedan 2019", [NORDVIK]),
        ("Tack @nordvikenergi för en bra intervju", [NORDVIK]),
        ("Saga Vård söker sjuksköterskor", [SAGA]),
        ("SagaVård söker sjuksköterskor", [SAGA]),
        ("hej @sagavard", [SAGA]),
        ("Kvarnbybanken har dålig ledning", [KVARNBY]),
        ("@brucknerlog antwortet nie", [BRUCKNER]),
    ],
)
def test_names_and_aliases_match(matcher: MentionMatcher, text: str, expected: list[str]) -> None:
    assert matcher.find(text) == expected


@pytest.mark.parametrize("text", ["#nordvik", "#nordvik!", "Äntligen fredag #nordvik #jobb", "(#nordvik)"])
def test_hashtag_alias_needs_nothing_before_the_hash(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == [NORDVIK]


def test_hashtag_alias_surface_includes_hash(matcher: MentionMatcher) -> None:
    assert matcher.find_spans("kul #Fjällhem") == [Mention(FJALLHEM, 4, 13, "#Fjällhem")]


def test_hashtag_alias_matches_whole_hashtag_token_only(matcher: MentionMatcher) -> None:
    # "#fjällhem" and "fjällhem" must not match the start of a longer hashtag.
    assert matcher.find("#fjällhemnytt är bäst") == []
    assert matcher.find("#lumonet") == []


def test_multiword_name_as_hashtag_is_the_whole_name(matcher: MentionMatcher) -> None:
    assert matcher.find("#FjällhemBostäder anställer") == [FJALLHEM]
    assert matcher.find("#NordvikEnergi") == [NORDVIK]


def test_handle_alias_requires_exact_handle(matcher: MentionMatcher) -> None:
    assert matcher.find("@nordvikenergi_fans") == []
    assert matcher.find("@nordvikenergifan") == []
    assert matcher.find("@NordvikEnergi.") == [NORDVIK]


def test_name_used_as_handle_or_hashtag(matcher: MentionMatcher) -> None:
    assert matcher.find("@Acme varför svarar ni inte?") == [ACME]
    assert matcher.find("#acme #hr") == [ACME]
    # A handle is an exact identifier: "@acmes" is someone else's account.
    assert matcher.find("@acmes") == []


# --------------------------------------------------------------------------- #
# Folding
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("text", ["Fjällhem", "Fjallhem", "FJÄLLHEM", "fjällhem", "FjÄllHem", "Fjaellhem"])
def test_case_and_diacritic_folding(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(f"Om {text} i dag") == [FJALLHEM]


@pytest.mark.parametrize("text", ["Brückner", "Bruckner", "BRÜCKNER", "Brueckner", "brückner"])
def test_german_umlaut_spellings(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(f"Die Arbeit bei {text} ist gut") == [BRUCKNER]


@pytest.mark.parametrize("text", ["Saga Vård", "Saga Vard", "SAGA VÅRD", "Saga Vaard", "sagavård"])
def test_a_ring_folding(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == [SAGA]


def test_fold_letters_without_decomposition() -> None:
    assert fold("Ø æ ß Å ü")[0] == "o ae ss a u"
    assert fold("Brød")[0] == fold("Bröd")[0] == "brod"


def test_decomposed_input_maps_back_to_original(matcher: MentionMatcher) -> None:
    text = "om Fja\u0308llhem"  # "ä" as a + combining diaeresis
    [m] = matcher.find_spans(text)
    assert (m.org, m.surface) == (FJALLHEM, "Fja\u0308llhem")


def test_offsets_map_back_through_expanding_folds(matcher: MentionMatcher) -> None:
    text = "Straße, Ærø og Brückners lager"  # ß -> ss and æ -> ae shift offsets
    [m] = matcher.find_spans(text)
    assert m == Mention(BRUCKNER, text.index("Brückners"), text.index(" lager"), "Brückners")


def test_typographic_apostrophe(matcher: MentionMatcher) -> None:
    [m] = matcher.find_spans("Acme’s new CEO")
    assert m.surface == "Acme’s"


def test_soft_hyphen_inside_name(matcher: MentionMatcher) -> None:
    assert matcher.find("Nord\u00advik") == [NORDVIK]


# --------------------------------------------------------------------------- #
# Word boundaries and suffixes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "text",
    [
        "the acmeist movement",
        "Pacme is something else",
        "Lumonet är en annan firma",
        "Kolumo",
        "nordvikingar är vi allihop",
        "Kvarnbyvägen 12",
        "Fjällhemmet i fjällen",
        "Acme2 and Acme_bot",
        "sagavårdare",
        "Brücknerstraße 5",
    ],
)
def test_look_alike_words_do_not_match(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == []


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("Nordviks vd avgår", NORDVIK),
        ("Kvarnbybankens HR", KVARNBY),
        ("Brückners Lager", BRUCKNER),
        ("Acme's CEO", ACME),
        ("Acmes CEO", ACME),
        ("Fjällhems hyresgäster", FJALLHEM),
        ("Lumos kundtjänst", LUMO),
        ("Kvarnbyn", KVARNBY),
        ("Kvarnbyns", KVARNBY),
        ("Nordviken", NORDVIK),
        ("Havsbrisets", HAVSBRIS),
        ("Lumoet", LUMO),
        ("Lumoas", LUMO),
        ("Acmees", ACME),
        ("Saga Vårds personal", SAGA),
        ("Kvarnby Bankens kontor", KVARNBY),
    ],
)
def test_genitive_and_definite_suffixes(matcher: MentionMatcher, text: str, org: str) -> None:
    assert matcher.find(text) == [org]


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("Acme:n rekrytointi", ACME),
        ("Lumo:lle palautetta", LUMO),
        ("Lumolle palautetta", LUMO),
        ("Lumolla on hyvä palkka", LUMO),
        ("Lumolta ei kuulunut mitään", LUMO),
        ("Acmessa töissä", ACME),
        ("Acmesta lähdin", ACME),
        ("Nordvikin johto", NORDVIK),
        ("Brücknerille", BRUCKNER),
        ("Lumoa suosittelen", LUMO),
        ("Fjällhemiä", FJALLHEM),
        ("Havsbrisiä", HAVSBRIS),
    ],
)
def test_finnish_case_endings(matcher: MentionMatcher, text: str, org: str) -> None:
    assert matcher.find(text) == [org]


def test_suffix_is_part_of_surface(matcher: MentionMatcher) -> None:
    assert [m.surface for m in matcher.find_spans("Kvarnbybankens och Acme:n")] == [
        "Kvarnbybankens",
        "Acme:n",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Acme.",
        "Acme!",
        "(Acme)",
        '"Acme"',
        "«Acme»",
        "Acme, Lumo",
        "Acme-anställda klagar",
        "—Acme—",
        "Acme?!",
        "Acme…",
        "Acme™",
        "'Acme'",
    ],
)
def test_punctuation_around_names(matcher: MentionMatcher, text: str) -> None:
    assert ACME in matcher.find(text)


@pytest.mark.parametrize("text", ["🚀Acme🚀", "Acme👍", "😡 Acme", "Acme🇸🇪", "❤️Acme"])
def test_emoji_next_to_names(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == [ACME]


def test_multiword_alias_matches_across_any_whitespace(matcher: MentionMatcher) -> None:
    for sep in (" ", "  ", "\n", "\t", "\u00a0", " \n "):
        text = f"Hos Kvarnby{sep}Bank idag"
        [m] = matcher.find_spans(text)
        assert m.org == KVARNBY
        assert m.surface == f"Kvarnby{sep}Bank"


# --------------------------------------------------------------------------- #
# URLs and e-mail addresses
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "text",
    [
        "Läs mer: https://nordvik.se/jobb",
        "https://www.example.com/nordvik-energi/jobb",
        "www.acme.com",
        "Sök på acme.com/careers idag",
        "Mejla rekrytering@nordvik.se",
        "lumo@gmail.com",
        "Länk: http://jobs.example.org/?q=Kvarnby+Bank",
    ],
)
def test_names_inside_urls_and_emails_do_not_count(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == []


def test_name_next_to_a_url_still_counts(matcher: MentionMatcher) -> None:
    assert matcher.find("Nordvik söker folk: https://nordvik.se/jobb") == [NORDVIK]
    assert matcher.find("Acme (https://example.com)") == [ACME]


# --------------------------------------------------------------------------- #
# Overlaps, multiple orgs, order
# --------------------------------------------------------------------------- #


def test_overlapping_aliases_yield_one_org_and_longest_span(matcher: MentionMatcher) -> None:
    spans = matcher.find_spans("Kvarnby Bank är bäst")
    assert spans == [Mention(KVARNBY, 0, 12, "Kvarnby Bank")]


def test_two_orgs_in_order_of_first_appearance(matcher: MentionMatcher) -> None:
    text = "Lumo betalar bättre än Acme, men Lumo har sämre chefer"
    assert matcher.find(text) == [LUMO, ACME]
    assert [m.org for m in matcher.find_spans(text)] == [LUMO, ACME, LUMO]


def test_longer_name_of_other_org_wins() -> None:
    m = MentionMatcher([Organization("Nordvik"), Organization("Nordvik Energi")])
    assert m.find("Nordvik Energi anställer") == ["Nordvik Energi"]
    assert m.find("Nordvik anställer") == ["Nordvik"]


def test_shared_alias_reports_both_orgs() -> None:
    m = MentionMatcher([Organization("A AB", ("Nova",)), Organization("B AB", ("Nova",))])
    assert m.find("Nova") == ["A AB", "B AB"]


def test_empty_cases() -> None:
    assert MentionMatcher([]).find("Acme") == []
    m = MentionMatcher([Organization("Acme", ("#", "@", "  "))])
    assert m.find("") == []
    assert m.find("# @ Acme") == ["Acme"]


def test_spans_point_into_original_text(matcher: MentionMatcher) -> None:
    text = "Fråga: har NÅGON jobbat på Fjällhems kontor eller hos @SagaVard?"
    for m in matcher.find_spans(text):
        assert text[m.start : m.end] == m.surface


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_spans_always_consistent(text: str) -> None:
    matcher = MentionMatcher(WATCHLIST_EXAMPLE)
    padded = f"{text} Acme {text}"
    spans = matcher.find_spans(padded)
    for m in spans:
        assert 0 <= m.start < m.end <= len(padded)
        assert padded[m.start : m.end] == m.surface
    assert [m.start for m in spans] == sorted(m.start for m in spans)


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #


def test_evaluate_mentions_counts_pairs(matcher: MentionMatcher) -> None:
    rows = [
        {"text": "Acme och Lumo", "orgs": [ACME, LUMO]},  # 2 tp
        {"text": "Acme", "orgs": [NORDVIK]},  # 1 fp, 1 fn
        {"text": "ingenting", "orgs": []},
    ]
    r = evaluate_mentions(matcher, rows)
    assert (r["tp"], r["fp"], r["fn"], r["rows"]) == (2, 1, 1, 3)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["false_positives"] == [(1, ACME)]
    assert r["false_negatives"] == [(1, NORDVIK)]


def test_evaluate_mentions_empty() -> None:
    r = evaluate_mentions(MentionMatcher([]), [])
    assert (r["precision"], r["recall"]) == (1.0, 1.0)


def test_labelled_mention_set_f1(matcher: MentionMatcher) -> None:
    rows = [json.loads(line) for line in MENTIONS_TEST_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200
    names = {o.name for o in WATCHLIST_EXAMPLE}
    assert all(set(r["orgs"]) <= names for r in rows)
    result = evaluate_mentions(matcher, rows)
    assert result["f1"] >= 0.97, result
