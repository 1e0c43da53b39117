"""Watchlist mention matching: which organisations does a post mention?

Pure logic, no I/O. Terms (org names and aliases) and text are folded the same
way (case, diacritics, whitespace), matched with one Aho-Corasick automaton and
then checked for word boundaries on the folded text. Offsets are mapped back to
the original text so that explanations can quote what was matched.

Each term is expanded into its other spellings first (variants.spellings:
å/aa, ä/æ/e, "&" as och/og/and/und/ja, hyphen for space), and a word one edit
away from a long name token is read as that token (variants.TypoIndex) before
the automaton runs, so a typo still combines with the rest of a multi-word name
and with the genitive and definite endings ("Nordvk Energis").
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick

from .textspans import link_spans, overlaps
from .variants import TypoIndex, spellings

__all__ = [
    "Mention",
    "MentionMatcher",
    "Organization",
    "fold",
]


@dataclass(frozen=True)
class Organization:
    """A watched organisation: canonical name plus aliases, handles and hashtags."""

    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mention:
    """One matched mention; ``start``/``end`` index the original text."""

    org: str
    start: int
    end: int
    surface: str
    # Matched by a term that names this organization and nothing else: its
    # @handle or its whole multi-word name. An ambiguous one-word name ("Alva")
    # is not distinctive, so the relevance step judges it (relevance.py).
    distinctive: bool = field(default=False, compare=False)


# --------------------------------------------------------------------------- #
# Folding
# --------------------------------------------------------------------------- #

# Letters that Unicode does not decompose into base + mark, so NFD alone would
# keep them apart from their ASCII spellings (Bröd/Brød must meet at "brod").
_LETTER_FOLDS = {
    "ø": "o",
    "æ": "ae",
    "œ": "oe",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ł": "l",
    "ı": "i",
    # Typographic apostrophes, so "Acme’s" behaves like "Acme's".
    "’": "'",
    "‘": "'",
    "ʼ": "'",
    "´": "'",
}
# Invisible format characters inside words (soft hyphen, joiners, BOM) would
# otherwise split a name in two.
_DROP = frozenset("\u00ad\u200c\u200d\u2060\ufeff")


def _fold_char(ch: str) -> str:
    if ch.isspace() or ch == "\u200b":
        return " "
    if ch in _DROP:
        return ""
    out = "".join(_LETTER_FOLDS.get(c, c) for c in ch.casefold())
    # NFD, not NFKD: compatibility decomposition would turn "Acme™" into
    # "acmetm" and break the word boundary after the name.
    out = unicodedata.normalize("NFD", out)
    return "".join(c for c in out if not unicodedata.combining(c))


# Characters whose folding is not exactly one character; text containing any
# of them needs an explicit offset map. Written before the table entry (see
# _FoldTable) so that a reader who sees the entry also sees the membership.
_NON_UNIT: set[str] = set()


class _FoldTable(dict[int, str]):
    """Lazily filled ``str.translate`` table; races only recompute equal values."""

    def __missing__(self, key: int) -> str:
        ch = chr(key)
        folded = _fold_char(ch)
        if len(folded) != 1:
            _NON_UNIT.add(ch)
        self[key] = folded
        return folded


_FOLD_TABLE = _FoldTable()
_ASCII_FOLD = bytes(ord(_FOLD_TABLE[cp]) for cp in range(128)) + bytes(range(128, 256))


def fold(text: str) -> tuple[str, list[int] | None]:
    """Fold ``text`` for matching; return it with a folded->original offset map.

    The map is ``None`` when offsets are unchanged (the common case), which
    keeps plain posts on the fast ``str.translate`` path.
    """
    if text.isascii():
        # bytes.translate is ~10x faster than str.translate with a dict, and
        # ASCII always folds one-to-one.
        folded = text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
    else:
        folded = text.translate(_FOLD_TABLE)
    if "  " not in folded and _NON_UNIT.isdisjoint(text):
        return folded, None
    chars: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        f = _FOLD_TABLE[ord(ch)]
        # Collapse whitespace runs so multi-word aliases match across any
        # spacing, line breaks or non-breaking spaces.
        if f == " " and chars and chars[-1] == " ":
            continue
        for c in f:
            chars.append(c)
            offsets.append(i)
    return "".join(chars), offsets


def _fold_term(term: str) -> str:
    return fold(term)[0].strip()


# --------------------------------------------------------------------------- #
# Boundaries
# --------------------------------------------------------------------------- #

# Endings allowed directly after a name: Nordic/German genitive and definite
# forms, and Finnish case endings (also after a colon: "Acme:n", "Lumo:lle").
# Stored folded (ä -> a). Deliberately no plural/compound endings such as
# "-ist", "-net", "-ingar", so look-alikes like "acmeist" stay out.
SUFFIXES: frozenset[str] = frozenset(
    {
        # sv/no/da/de/en genitive and definite forms
        "s", "ens", "en", "ns", "n", "et", "ets", "as", "es",
        # fi case endings (folded), incl. the -i- linking vowel after consonants
        "a", "lla", "lle", "lta", "ssa", "sta", "in", "iin", "ia",
        "ille", "illa", "ilta", "issa", "ista", "na", "ksi", "ta",
    }
)  # fmt: skip

_HAS_WORD_CHAR = re.compile(r"[^\W_]").search
_WORDS = re.compile(r"[^\W_]+").finditer


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


# --------------------------------------------------------------------------- #
# Matcher
# --------------------------------------------------------------------------- #

_HANDLE, _OTHER = 0, 1
_SLIP, _ENDING = "slip", "ending"  # variants.edit_kind


class MentionMatcher:
    """Find watchlist organisations mentioned in a text.

    Build once per watchlist and share: the automaton is never mutated after
    construction, so concurrent ``find`` calls are safe.
    """

    def __init__(self, orgs: Iterable[Organization]) -> None:
        self._names: list[str] = []
        terms: dict[str, set[int]] = {}
        distinctive: dict[str, set[int]] = {}
        name_tokens: set[str] = set()

        def add(term: str, org_id: int, whole_name: bool) -> None:
            key = _fold_term(term)
            if _HAS_WORD_CHAR(key):
                terms.setdefault(key, set()).add(org_id)
                if whole_name or key[0] == "@":
                    distinctive.setdefault(key, set()).add(org_id)

        for org in orgs:
            org_id = len(self._names)
            self._names.append(org.name)
            joined_name = _fold_term(org.name).replace(" ", "")
            for raw in (org.name, *org.aliases):
                if raw[:1] not in "@#":
                    name_tokens.update(w.group() for w in _WORDS(_fold_term(raw)))
                whole = len(raw.split()) > 1 or _fold_term(raw).lstrip("#") == joined_name
                for term in spellings(raw):
                    words = term.split()
                    add(term, org_id, whole)
                    # A multi-word name is hashtagged without spaces
                    # (#FjällhemBostäder); it is still the whole-name token.
                    if len(words) > 1 and term[0] not in "@#":
                        add("#" + "".join(words), org_id, True)

        self._automaton = ahocorasick.Automaton()
        for key, ids in terms.items():
            kind = _HANDLE if key[0] == "@" else _OTHER
            multiword = sum(1 for _ in _WORDS(key)) > 1
            self._automaton.add_word(key, (len(key), tuple(sorted(ids)), kind,
                                           frozenset(distinctive.get(key, ())), multiword))
        self._empty = not terms
        if not self._empty:
            self._automaton.make_automaton()
        self._typos = TypoIndex(name_tokens, (w.group() for key in terms for w in _WORDS(key)))


    def find(self, text: str) -> list[str]:
        """Canonical names mentioned in ``text``, unique, in order of first appearance."""
        seen: dict[str, None] = {}
        for m in self.find_spans(text):
            seen.setdefault(m.org, None)
        return list(seen)

    def find_spans(self, text: str) -> list[Mention]:
        """All mentions with original-text offsets, ordered by position."""
        if self._empty or not text:
            return []
        folded, offsets = fold(text)
        typos = self._typo_words(folded) if self._typos else []
        # A letter added at a word's end is its inflection (Nordviks) far more often
        # than a typo, so the words are corrected without those first; a second pass
        # with them corrected too keeps only multi-word names that need one
        # (Solvikh Havbruk).
        candidates = self._candidates(text, folded, offsets, [t for t in typos if t[2][1] != _ENDING], False)
        if any(t[2][1] == _ENDING for t in typos):
            candidates += self._candidates(text, folded, offsets, typos, True)
        if not candidates:
            return []

        # Leftmost-longest: "Kvarnby Bank" wins over "Kvarnby" inside it,
        # "#fjällhem" over "fjällhem", and a longer name over a shorter one
        # belonging to a different org.
        candidates.sort(key=lambda c: (c[0], -c[1]))
        out: list[Mention] = []
        taken_until = -1
        # A name that appears only inside a URL, bare domain or e-mail address
        # is not a mention (https://nordvik.se/jobb, jobb@nordvik.se): links are
        # shared without talking about the employer, and counting them would
        # flood reviewers with job-ad spam. Links are found once per text, only
        # for texts with a candidate, and looked up per candidate.
        links = link_spans(text)
        for o_start, o_end, org_ids, distinctive in candidates:
            if o_start < taken_until:
                continue
            taken_until = o_end
            if overlaps(links, o_start, o_end):
                continue
            surface = text[o_start:o_end]
            out.extend(Mention(self._names[i], o_start, o_end, surface, i in distinctive) for i in org_ids)
        return out

    def _candidates(self, text: str, folded: str, offsets: list[int] | None, typos: list,
                    endings_only: bool) -> list[tuple[int, int, tuple[int, ...], frozenset[int]]]:
        """Terms found in ``folded`` with ``typos`` corrected, as original-text spans."""
        fixes: list[tuple[int, int, str]] = []
        if typos:
            folded, offsets, fixes = self._corrected(folded, offsets, typos)
        fix_ends = [e for _, e, _ in fixes]  # ascending: fixes do not overlap
        out = []
        n = len(folded)
        for last, (length, org_ids, kind, distinctive, multiword) in self._automaton.iter(folded):
            start, end = last - length + 1, last + 1
            if fixes and not self._typos_allowed(fixes, fix_ends, start, end, multiword, endings_only):
                continue
            resolved = self._check(folded, n, start, end, kind)
            if resolved is not None:
                out.append((*self._to_original(text, offsets, start, resolved), org_ids, distinctive))
        return out

    @staticmethod
    def _typos_allowed(fixes: list[tuple[int, int, str]], fix_ends: list[int], start: int, end: int,
                       multiword: bool, endings_only: bool) -> bool:
        """At most one corrected word per name; any typo inside a multi-word name, only
        a slip in a one-word name (variants.TypoIndex says why)."""
        # Only the fixes from the first one ending after ``start``: a post full of
        # typos costs a lookup per hit, not a scan of every fix.
        inside = []
        for s, _, kind in itertools.islice(fixes, bisect.bisect_right(fix_ends, start), None):
            if s >= end or len(inside) > 1:
                break
            inside.append(kind)
        if endings_only:
            return inside == [_ENDING] and multiword
        return not inside or (len(inside) == 1 and (multiword or inside[0] == _SLIP))

    def _typo_words(self, folded: str) -> list[tuple[int, int, tuple[str, str]]]:
        """(start, end, (watched word, kind)) for each word of ``folded`` that is a typo
        of a watched name word. Handles are identifiers, never corrected (@nordvk is
        someone else's account)."""
        typos = self._typos
        seen: dict[str, tuple[str, str] | None] = {}  # a post repeats its words; look each up once
        out = []
        for m in _WORDS(folded):
            w = m.group()
            if typos.could_be_typo(w) and (m.start() == 0 or folded[m.start() - 1] != "@"):
                hit = seen[w] if w in seen else seen.setdefault(w, typos.lookup(w))
                if hit is not None:
                    out.append((m.start(), m.end(), hit))
        return out

    @staticmethod
    def _corrected(folded: str, offsets: list[int] | None, typos: list
                   ) -> tuple[str, list[int], list[tuple[int, int, str]]]:
        """``folded`` with each typo replaced by the watched word, the offset map updated
        to match, and where the replacements are (start, end, kind) in the new text.

        Correcting before the automaton runs lets a corrected word combine with
        suffixes and the rest of a multi-word name.
        """
        base = offsets if offsets is not None else range(len(folded))
        chars: list[str] = []
        new_offsets: list[int] = []
        fixes: list[tuple[int, int, str]] = []
        pos = 0
        for start, end, (token, kind) in typos:
            chars.append(folded[pos:start])
            new_offsets.extend(base[pos:start])
            fixes.append((len(new_offsets), len(new_offsets) + len(token), kind))
            chars.append(token)
            # Every letter of the replacement maps into the word it replaces, the last
            # onto its last, so the surface quotes the whole word as written.
            last = len(token) - 1
            new_offsets.extend(base[end - 1 if i == last else min(start + i, end - 1)] for i in range(len(token)))
            pos = end
        chars.append(folded[pos:])
        new_offsets.extend(base[pos:])
        return "".join(chars), new_offsets, fixes

    @staticmethod
    def _check(folded: str, n: int, start: int, end: int, kind: int) -> int | None:
        """Return the (possibly suffix-extended) end if boundaries hold, else None."""
        before = folded[start - 1] if start > 0 else " "
        if _is_word(before):
            return None
        if end == n:
            return end
        after = folded[end]
        # "@acme" is someone's handle: only the exact handle token counts, a
        # letter right after it means a different account (@acmefans).
        exact_only = kind == _HANDLE or before == "@"
        if _is_word(after):
            if exact_only:
                return None
            j = end
            while j < n and _is_word(folded[j]):
                j += 1
            return j if folded[end:j] in SUFFIXES else None
        if after in "':" and not exact_only:
            # Include "'s" / ":n" in the surface form for explanations.
            j = end + 1
            while j < n and _is_word(folded[j]):
                j += 1
            if j > end + 1 and folded[end + 1 : j] in SUFFIXES:
                return j
        return end

    @staticmethod
    def _to_original(text: str, offsets: list[int] | None, start: int, end: int) -> tuple[int, int]:
        if offsets is None:
            return start, end
        o_start, o_end = offsets[start], offsets[end - 1] + 1
        # A decomposed final letter ("o" + U+0308) keeps its combining mark.
        while o_end < len(text) and unicodedata.combining(text[o_end]):
            o_end += 1
        return o_start, o_end
