"""Unit tests for lyssna.classify.query (include_any, exclude, near) and the
configuration errors for queries that can never match."""

from __future__ import annotations

import textwrap

import pytest

from lyssna.classify.mentions import MentionMatcher, Organization
from lyssna.classify.query import EXCLUDED, NO_INCLUDE, NOT_NEAR, Query, Term, problems
from lyssna.common.config import ConfigError, load_settings

PLUTO = Organization("Pluto Logistik", ("Pluto", "@plutologistik"))
MATCHER = MentionMatcher([PLUTO])


def verdict(query: Query, text: str) -> str | None:
    return query.verdict(text, MATCHER.find_spans(text))


# --------------------------------------------------------------------------- #
# One operator at a time
# --------------------------------------------------------------------------- #


def test_no_query_lets_every_mention_through() -> None:
    assert not Query()
    assert verdict(Query(), "Pluto är en hund") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Pluto söker truckförare till lagret", None),
    ("Pluto har öppnat en ny terminal i Jönköping", None),
    ("Pluto är världens bästa hund", NO_INCLUDE),
])
def test_include_any(text: str, expected: str | None) -> None:
    assert verdict(Query(include_any=["lager*", "terminal", "truckförare"]), text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Pluto söker truckförare", None),
    ("Min hund Pluto sover", EXCLUDED),
    ("Pluto och Musse Pigg på Disneyland", EXCLUDED),   # phrase "Musse Pigg"
    ("Pluto och Musse på bio", None),                   # half a phrase is not the phrase
])
def test_exclude(text: str, expected: str | None) -> None:
    assert verdict(Query(exclude=["hund", "Musse Pigg"]), text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Pluto betalar dålig lön", None),                      # two words between
    ("Pluto betalar riktigt dålig lön", NOT_NEAR),          # three words between
    ("Lön? Pluto betalar inget", None),                     # before the name counts too
    ("@plutologistik lönen kom sent", None),                # a handle's word starts after "@"
    ("Pluto. Ett två tre fyra fem lön", NOT_NEAR),
])
def test_near_counts_words_between(text: str, expected: str | None) -> None:
    assert verdict(Query(near_terms=["lön*"], near_within=2), text) == expected


def test_near_any_mention_of_the_organization() -> None:
    text = "Pluto var en hund i en film. Men Pluto Logistik betalar bra lön"
    assert verdict(Query(near_terms=["lön"], near_within=3), text) is None


def test_operators_combine_exclude_first() -> None:
    q = Query(include_any=["lager"], exclude=["hund"], near_terms=["jobb*"], near_within=3)
    assert verdict(q, "Pluto lager jobbet") is None
    assert verdict(q, "Pluto lager jobbet hund") == EXCLUDED
    assert verdict(q, "Pluto jobbet") == NO_INCLUDE
    assert verdict(q, "Pluto lager a b c d jobbet") == NOT_NEAR


def test_terms_fold_like_names() -> None:
    assert verdict(Query(include_any=["LÖN"]), "Pluto: lon för lite") is None
    assert verdict(Query(include_any=["lön"]), "Pluto: Løn for lidt") is None


def test_prefix_only_with_star() -> None:
    assert verdict(Query(include_any=["lager"]), "Pluto lagerarbetare") == NO_INCLUDE
    assert verdict(Query(include_any=["lager*"]), "Pluto lagerarbetare") is None
    assert verdict(Query(include_any=["nytt lager*"]), "Pluto öppnar nytt lagerhotell") is None


def test_term_contains() -> None:
    assert Term.parse("nytt lager").contains(Term.parse("lager"))
    assert Term.parse("lagerhotell").contains(Term.parse("lager*"))
    assert not Term.parse("lager").contains(Term.parse("nytt lager"))


# --------------------------------------------------------------------------- #
# Queries that can never match
# --------------------------------------------------------------------------- #


def keys(found) -> list[tuple]:
    return [p.key for p in found]


def test_a_satisfiable_query_has_no_problems() -> None:
    assert problems("Pluto Logistik", ["Pluto"], ["lager"], ["hund"], ["jobb"]) == []


def test_empty_include_any_never_matches() -> None:
    assert keys(problems("Pluto Logistik", [], [], [], None)) == [("include_any",)]


def test_term_without_letters_never_matches() -> None:
    assert keys(problems("Pluto Logistik", [], ["lager", "!!"], ["..."], ["?"])) == [
        ("include_any", 1), ("exclude", 0), ("near", "terms", 0)]


def test_every_include_term_excluded_never_matches() -> None:
    assert keys(problems("Pluto Logistik", [], ["nytt lager", "lagerjobb"], ["lager*"], None)) == [("exclude",)]
    assert problems("Pluto Logistik", [], ["nytt lager", "paket"], ["lager"], None) == []


def test_every_near_term_excluded_never_matches() -> None:
    assert keys(problems("Pluto Logistik", [], None, ["lön"], ["lön", "dålig lön"])) == [("exclude",)]


def test_own_name_excluded_never_matches() -> None:
    assert keys(problems("Pluto Logistik", ["Pluto"], None, ["pluto"], None)) == [("exclude",)]
    # the @handle still names it without the excluded word
    assert problems("Pluto Logistik", ["Pluto", "@plutologistik"], None, ["pluto"], None) == []


def load(tmp_path, body: str):
    path = tmp_path / "lyssna.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_settings(path, env={})


def test_config_takes_a_query(tmp_path) -> None:
    settings = load(tmp_path, """\
        organizations:
          - name: Pluto Logistik
            aliases: [Pluto]
            ambiguous: true
            description: Swedish logistics company
            context: [lager, paket]
            include_any: [lager*, paket]
            exclude: [hund, Musse Pigg]
            near: {terms: [jobb*, lön], within: 5}
        """)
    org = settings.organizations[0]
    assert (org.include_any, org.exclude, org.near.terms, org.near.within) == (
        ["lager*", "paket"], ["hund", "Musse Pigg"], ["jobb*", "lön"], 5)


@pytest.mark.parametrize(("entry", "where", "fix"), [
    ("exclude: [pluto]", "4: organizations[0].exclude", "remove the organization's own name from exclude"),
    ("include_any: []", "4: organizations[0].include_any", "list at least one term"),
    ("near: {terms: ['--'], within: 3}", "4: organizations[0].near.terms[0]", "write a word or phrase"),
    # the missing key is reported at its organization's line
    ("ambiguous: true", "2: organizations[0].description", "add description:"),
])
def test_config_refuses_a_query_that_can_never_match(tmp_path, entry: str, where: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"""\
            organizations:
              - name: Pluto Logistik
                aliases: [Pluto]
                {entry}
            """)
    message = str(err.value)
    assert f"lyssna.yaml:{where}:" in message and f"Fix: {fix}" in message
