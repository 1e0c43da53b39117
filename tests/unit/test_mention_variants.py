"""Unit tests for lyssna.classify.variants and the variant rules in the matcher:
Nordic spellings, "&" written out, hyphenated names, typos, and look-alikes that
must stay out."""

from __future__ import annotations

import pytest

from lyssna.classify.mentions import MentionMatcher, Organization, fold
from lyssna.classify.variants import TypoIndex, edit_kind, spellings

BRATT = "Brattström & Söner"
SKAR = "Skärholt Maskin"
STERN = "Sternwald Chemie"
TORN = "Tornquist & Wahl"
KAERS = "Kærsgaard Medico"
VASKI = "Vaskisalo"
ALVA = "Alva Omsorg"
AALBORG = "Aalborg Varme"
FJALL = "Fjällhem Bostäder"

ORGS = (
    Organization(BRATT, ("Brattström", "@brattstrom")),
    Organization(SKAR, ("Skärholt", "@skarholt")),
    Organization(STERN, ("Sternwald", "@sternwaldchemie")),
    Organization(TORN, ("@tornquistwahl", "#tornquistwahl")),
    Organization(KAERS, ("Kærsgaard", "@kaersgaardmedico")),
    Organization(VASKI, ("Vaskisalo Oyj", "@vaskisalo")),
    Organization(ALVA, ("Alva", "@alvaomsorg")),
    Organization(AALBORG, ()),
    Organization(FJALL, ("Fjällhem",)),
)


@pytest.fixture(scope="module")
def matcher() -> MentionMatcher:
    return MentionMatcher(ORGS)


def folded(terms: set[str]) -> set[str]:
    return {fold(t)[0] for t in terms}


# --------------------------------------------------------------------------- #
# spellings(): the rules one by one
# --------------------------------------------------------------------------- #


def test_a_ring_and_double_a_are_one_letter_both_ways() -> None:
    assert "saga vaard" in folded(spellings("Saga Vård"))
    assert "alborg varme" in folded(spellings("Aalborg Varme"))  # Ålborg


def test_danish_ae_is_swedish_a_umlaut() -> None:
    assert {"karsgaard", "karsgard", "kaersgard"} <= folded(spellings("Kærsgaard"))


def test_a_umlaut_or_ae_written_e_only_in_longer_words() -> None:
    assert "skerholt" in folded(spellings("Skärholt"))
    assert "fjellhem" in folded(spellings("Fjällhem"))
    # "Bäck" -> "Beck" would be a common surname: too short for the e rule.
    assert "beck" not in folded(spellings("Bäck"))


def test_o_umlaut_and_o_slash_fold_together() -> None:
    assert fold("Brattstrøm")[0] == fold("Brattström")[0]


@pytest.mark.parametrize("conjunction", ["och", "og", "and", "und", "ja"])
def test_ampersand_written_out(conjunction: str) -> None:
    assert f"tornquist {conjunction} wahl" in folded(spellings("Tornquist & Wahl"))
    # and the other way round: a name written with a conjunction also takes "&"
    assert "tornquist & wahl" in folded(spellings(f"Tornquist {conjunction} Wahl"))


def test_conjunction_only_between_words() -> None:
    assert spellings("Og") == {"Og"}
    assert "brod och smor" in folded(spellings("Bröd&Smör"))


def test_multiword_name_hyphenated() -> None:
    assert "saga-vard" in folded(spellings("Saga Vård"))


def test_handles_have_one_spelling() -> None:
    assert spellings("@skärholt") == {"@skärholt"}


# --------------------------------------------------------------------------- #
# The matcher with the variants
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("Skærholt Maskin søker mekanikere", SKAR),
        ("Skerholt Maskin ansetter", SKAR),
        ("Kärsgård Medico öppnar kontor i Lund", KAERS),
        ("Kaersgaard Medico sucht Vertrieb", KAERS),
        ("Brattstrøm og Sønner leverer træ", BRATT),
        ("Ålborg Varme hæver prisen", AALBORG),
        ("Fjellhem Bostäder bygger nytt", FJALL),
    ],
)
def test_nordic_spellings_match(matcher: MentionMatcher, text: str, org: str) -> None:
    assert matcher.find(text) == [org]


@pytest.mark.parametrize("text", ["Tornquist och Wahl rekryterar", "Tornquist og Wahl ansetter",
                                  "Tornquist and Wahl is hiring", "Tornquist und Wahl berät",
                                  "Tornquist ja Wahl rekrytoi", "Tornquist&Wahl"])
def test_ampersand_matches_written_out(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == [TORN]


@pytest.mark.parametrize("text", ["Der Sternwald-Konzern streicht Stellen", "Skärholt-fabriken i Lycksele",
                                  "Alva-chefen i Sollentuna", "Skärholt-Maskin-kunder"])
def test_hyphenated_compounds_match(matcher: MentionMatcher, text: str) -> None:
    [org] = matcher.find(text)
    assert org in (STERN, SKAR, ALVA)


@pytest.mark.parametrize(
    ("text", "org"),
    [
        ("Alva Omsorh har inte betalat", ALVA),            # substitution
        ("Alva Omsrog har inte betalat", ALVA),            # swapped neighbours
        ("Tornquist & Wal is recruiting", TORN),           # deletion in a short word of the name
        ("Tornquidt & Wahl har gett", TORN),               # substitution, not a neighbouring key
        ("Sternwalf Chemie meldet Kurzarbeit", STERN),     # at the last letter
        ("Kærsgaardd Medico er kåret", KAERS),             # last letter doubled
        ("Kärsgård Medco söker testare", KAERS),           # a typo on top of a Nordic spelling
        ("Vaskisal Oyj is hiring", VASKI),                 # multi-word alias, last letter dropped
        ("Skärholth Maskin söker", SKAR),                  # a letter added at a word's end...
        ("Tornquist & Wahle stellt ein", TORN),            # ...is a typo inside a multi-word name
        ("Vaskisallo is hiring metallurgists", VASKI),     # one-word name: a doubled letter
        ("Skärhollt levererar", SKAR),                     # one-word alias: a doubled letter
        ("Bratström har varslat", BRATT),                  # one-word alias: a double written once
        ("Brattsrtöm har varslat", BRATT),                 # one-word alias: swapped neighbours
    ],
)
def test_typos_match(matcher: MentionMatcher, text: str, org: str) -> None:
    assert matcher.find(text) == [org]


def test_typo_keeps_the_written_word_as_surface(matcher: MentionMatcher) -> None:
    [m] = matcher.find_spans("Igår: Alva Omsorh igen")
    assert m.surface == "Alva Omsorh"
    [m] = matcher.find_spans("Vaskisallo:n")
    assert m.surface == "Vaskisallo:n"


@pytest.mark.parametrize(
    "text",
    [
        "Im Naturpark Steinwald gibt es neue Wanderwege",   # one-word look-alike, substitution
        "Vaskitalo Oy myy kuparikattoja",                    # one-word look-alike, substitution
        "Kjærsgaard VVS kom og fiksede radiatoren",          # one-word look-alike, insertion
        "Kærgaard Klitplantage er perfekt",                  # one-word look-alike, deletion
        "Die Sternwarte hat am Samstag offen",
        "Tornberg & Wahl Advokatbyrå söker jurist",
        "Bergström & Söner Rör AB söker servicetekniker",
        "Strømsø & Sønner Bakeri i Drammen",
        "Tornow & Wahlen Steuerberatung",
        "Skärholmens centrum har en ny bokhandel",
        "Vaskiluoto on kaunis paikka",
        "Tornqvist & Vahl",                                  # two typos in one name
        "Lornquist & Wahl",                                  # never at the first letter...
        "Tornquist & Mahl",                                  # ...of any word
        "@skarholtt",                                        # handles are exact
        "Skärholtz",                                         # a letter added at the end is no typo
        "Brattsröm har varslat",                             # one-word name: a dropped letter is no slip
    ],
)
def test_look_alikes_do_not_match(matcher: MentionMatcher, text: str) -> None:
    assert matcher.find(text) == []


def test_suffix_still_beats_typo(matcher: MentionMatcher) -> None:
    # "Skärholts" is the genitive, not a typo of anything: it matches exactly,
    # alone and in the whole name.
    assert matcher.find("Skärholts montörer") == [SKAR]
    [m] = matcher.find_spans("Skärholts Maskin")
    assert m.surface == "Skärholts Maskin"


# --------------------------------------------------------------------------- #
# The typo primitives
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("word", "target", "kind"),
    [
        ("omsorh", "omsorg", "slip"),       # g/h are neighbouring keys
        ("omsrog", "omsorg", "slip"),       # swap
        ("vaskisallo", "vaskisalo", "slip"),  # doubled
        ("bratstrom", "brattstrom", "slip"),  # a double written once
        ("tornquidt", "tornquist", "slip"),  # s/d are neighbouring keys
        ("tornquimt", "tornquist", "edit"),
        ("sternwad", "sternwald", "edit"),
        ("sternwald", "sternwald", None),   # no edit
        ("xternwald", "sternwald", None),   # first letter
        ("sternwalds", "sternwald", "ending"),  # a letter added at the end
        ("sternwaldd", "sternwald", "slip"),  # a doubled last letter is a slip
        ("stirnwalf", "sternwald", None),   # two edits
    ],
)
def test_edit_kind(word: str, target: str, kind: str | None) -> None:
    assert edit_kind(word, target) == kind


def test_typo_index_refuses_a_word_close_to_two_names() -> None:
    index = TypoIndex(["hedlund", "hedlung"])
    assert index.lookup("hedlunb") is None
    assert index.lookup("hedlnd") == ("hedlund", "edit")


def test_typo_index_never_corrects_a_known_spelling() -> None:
    index = TypoIndex(["bruckner"], spelled=["brueckner"])
    assert index.lookup("brueckner") is None
