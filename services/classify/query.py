"""Per-organization boolean queries: ``include_any``, ``exclude``, ``near``.

Pure logic, no I/O. For users who want to say more than the relevance model
learns: a mention counts only if the post also has one of ``include_any``, has
none of ``exclude``, and has one of ``near.terms`` within ``near.within`` words
of the mention. Terms are folded like names (case, diacritics) and matched as
whole words or phrases; a trailing ``*`` makes the last word a prefix
(``energi*`` finds "energibolaget"). Words are found with one linear pass over
the post, and each term is compared only with the words that could start it.

``problems`` finds the queries that can never match (an empty list, a term
without letters, every wanted term containing an excluded one, the
organization's own name excluded), so the configuration refuses them at start.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .mentions import Mention, fold

__all__ = ["Query", "QueryProblem", "Term", "TermSet", "problems", "words_of"]

_WORDS = re.compile(r"[^\W_]+")

# Why a mention did not count (ClassifiedPost.rejected_orgs).
EXCLUDED, NO_INCLUDE, NOT_NEAR = "exclude", "include_any", "near"


def words_of(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _WORDS.findall(fold(text)[0])


@dataclass(frozen=True)
class Term:
    """A folded query term: its words, the last one a prefix if written with ``*``."""

    words: tuple[str, ...]
    prefix: bool = False

    @classmethod
    def parse(cls, raw: str) -> "Term":
        raw = raw.strip()
        prefix = raw.endswith("*")
        return cls(tuple(words_of(raw.rstrip("*"))), prefix)

    def matches_at(self, words: Sequence[str], i: int) -> bool:
        k = len(self.words)
        if not k or i + k > len(words):
            return False
        for j in range(k - 1):
            if words[i + j] != self.words[j]:
                return False
        last, want = words[i + k - 1], self.words[-1]
        return last.startswith(want) if self.prefix else last == want

    def contains(self, other: "Term") -> bool:
        """Every text that has ``self`` also has ``other``."""
        return any(other.matches_at(self.words, i) for i in range(len(self.words)))


class TermSet:
    """Terms indexed by their first word, so a post's words are each looked up once."""

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms = tuple(t for t in terms if t.words)
        self._exact: dict[str, list[Term]] = {}
        self._prefix_single: list[Term] = []
        for t in self.terms:
            if t.prefix and len(t.words) == 1:
                self._prefix_single.append(t)
            else:
                self._exact.setdefault(t.words[0], []).append(t)

    def positions(self, words: Sequence[str]) -> list[tuple[int, int]]:
        """(first word, last word) of every occurrence, in order."""
        out = []
        for i, w in enumerate(words):
            for t in self._exact.get(w, ()):
                if t.matches_at(words, i):
                    out.append((i, i + len(t.words) - 1))
            for t in self._prefix_single:
                if w.startswith(t.words[0]):
                    out.append((i, i))
        return out

    def found_in(self, words: Sequence[str]) -> bool:
        return bool(self.positions(words))


@dataclass(frozen=True)
class QueryProblem:
    """A query that can never match: the key, what is wrong, and the fix."""

    key: tuple[str | int, ...]  # where in the organization's entry
    message: str
    fix: str


class Query:
    """One organization's query. ``verdict`` says why the mention does not count, or None."""

    def __init__(self, include_any: Sequence[str] | None = None, exclude: Sequence[str] = (),
                 near_terms: Sequence[str] = (), near_within: int = 0) -> None:
        self.include_any = TermSet(map(Term.parse, include_any)) if include_any is not None else None
        self.exclude = TermSet(map(Term.parse, exclude))
        self.near = TermSet(map(Term.parse, near_terms)) if near_terms else None
        self.within = near_within

    def __bool__(self) -> bool:
        return bool(self.include_any is not None or self.exclude.terms or self.near is not None)

    def verdict(self, text: str, mentions: Sequence[Mention]) -> str | None:
        """``mentions``: this organization's mentions in ``text``."""
        spans = [w.span() for w in _WORDS.finditer(text)]
        # Word by word, so positions line up with the text (fold can change lengths).
        words = [fold(text[s:e])[0] for s, e in spans]
        if self.exclude.terms and self.exclude.found_in(words):
            return EXCLUDED
        if self.include_any is not None and not self.include_any.found_in(words):
            return NO_INCLUDE
        if self.near is not None:
            starts = [s for s, _ in spans]
            # covered[i]: how many of words 0..i-1 a near term covers, so each mention
            # is checked in constant time however many terms and mentions a post has.
            mark = [0] * (len(words) + 1)
            for a, b in self.near.positions(words):
                mark[a] += 1
                mark[b + 1] -= 1
            covered = [0]
            depth = 0
            for i in range(len(words)):
                depth += mark[i]
                covered.append(covered[-1] + (depth > 0))
            for m in mentions:
                # The mention's first and last word (a handle's word starts after its "@").
                first = bisect.bisect_left(starts, m.start)
                last = max(first, bisect.bisect_left(starts, m.end) - 1)
                # At most ``within`` words strictly between: "Acme <1 2> lön" is within 2.
                lo, hi = max(0, first - self.within - 1), min(len(words), last + self.within + 2)
                if covered[hi] - covered[lo] > 0:
                    return None
            return NOT_NEAR
        return None


def problems(name: str, aliases: Sequence[str], include_any: Sequence[str] | None,
             exclude: Sequence[str], near_terms: Sequence[str] | None) -> list[QueryProblem]:
    """Why this query can never match (empty: it can)."""
    out: list[QueryProblem] = []
    if include_any is not None and not include_any:
        out.append(QueryProblem(("include_any",), "an empty include_any can never be satisfied",
                                "list at least one term, or remove include_any"))
    lists = {("include_any",): include_any or (), ("exclude",): exclude, ("near", "terms"): near_terms or ()}
    for key, terms in lists.items():
        for i, raw in enumerate(terms):
            if not Term.parse(raw).words:
                out.append(QueryProblem((*key, i), f"the term {raw!r} has no letters or digits, so it is "
                                        "never found", "write a word or phrase, or remove the term"))
    excluded = [t for t in map(Term.parse, exclude) if t.words]

    def always_excluded(raw_terms: Sequence[str]) -> bool:
        terms = [t for t in map(Term.parse, raw_terms) if t.words]
        return bool(terms) and all(any(t.contains(x) for x in excluded) for t in terms)

    if excluded and always_excluded(include_any or ()):
        out.append(QueryProblem(("exclude",), "every include_any term contains an excluded term, so a post "
                                "with one is always excluded", "remove that term from exclude or add an "
                                "include_any term without it"))
    if excluded and always_excluded(near_terms or ()):
        out.append(QueryProblem(("exclude",), "every near term contains an excluded term, so a post with one is "
                                "always excluded", "remove that term from exclude or add a near term without it"))
    names = [n for n in (name, *aliases) if not n.startswith("@")]
    handles = [n for n in aliases if n.startswith("@")]
    if excluded and not handles and always_excluded(names):
        out.append(QueryProblem(("exclude",), f"every name of {name!r} contains an excluded term, so every mention "
                                "is excluded", "remove the organization's own name from exclude"))
    return out
