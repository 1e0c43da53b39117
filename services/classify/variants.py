"""The other ways a watched name is written: Nordic spellings, conjunctions, hyphens, typos.

Pure logic, no I/O. Two mechanisms with different costs:

* ``spellings`` expands a watchlist term into the finite set of ways it is
  spelled across the six languages (å/aa, ä/æ/e, ö/ø via folding, ``&`` as
  och/og/and/und/ja, a multi-word name joined by hyphens). They go into the
  exact matcher's automaton as extra terms, so they cost nothing per post.
* ``TypoIndex`` finds words in a post that are one edit away from a watched
  name token (a typo), with a deletion neighbourhood built once per watchlist:
  a post's word is looked up by its own one-deletion variants, so the work per
  word is bounded by its length and independent of the watchlist's size.

Both stay precise by construction. A typo never touches a word's first letter
(where a different word most often starts). Inside a multi-word name any one
edit counts, because the rest of the name anchors it (Tornquist & Wal, Alva
Omsorh); a name of one word (at least six letters) takes only a slip of the
finger: a neighbouring key, two letters swapped, a letter doubled or a double
written once (Vaskisallo). A one-word look-alike differs in other ways
(Steinwald/Sternwald, Vaskitalo/Vaskisalo, Kjærsgaard/Kærsgaard), so it stays
out. A letter added at the end is an ending, not a typo (Nordviks, Pluton).
The vowel rules apply only where a letter really has two spellings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import product

__all__ = ["CONJUNCTIONS", "KEY_NEIGHBOURS", "MIN_TYPO_LETTERS", "TypoIndex", "edit_kind", "spellings"]

# "&" as the six languages write it out (sv, no/da, en, de, fi). A term written
# with any of them is also matched with each of the others.
CONJUNCTIONS: tuple[str, ...] = ("&", "och", "og", "and", "und", "ja")
MIN_TYPO_LETTERS = 6       # a one-word name takes typos from this length on
MIN_TYPO_WORD_LETTERS = 4  # a word of a multi-word name, from this length on
# The ä/æ -> e and aa -> å rules change a letter's identity, not just its
# script; on short words that makes look-alikes (Bäck -> Beck), so they need
# this many letters in the word.
MIN_VOWEL_RULE_LETTERS = 5
_MAX_SPELLINGS = 64  # a pathological name (many &s and vowels) stays bounded

_WORD_SPLIT = re.compile(r"(\s+)")


def _word_forms(word: str) -> set[str]:
    """Spellings of one whitespace-free word (case kept: folding happens later).

    Each rule applies on top of the previous ones' results, so a word with
    two Nordic letters gets every mix (Kærsgaard -> Kärsgård, Kersgård...).
    """
    forms = {word}
    if "&" in word and len(word) > 1:
        # "Bröd&Smör": also with the conjunction spelled out.
        forms |= {word.replace("&", f" {c} ") for c in CONJUNCTIONS[1:]}
    long_enough = sum(ch.isalpha() for ch in word) >= MIN_VOWEL_RULE_LETTERS
    # Danish/Norwegian æ is the Swedish/Finnish/German ä (Bæk = Bäk).
    forms |= {f.translate(_AE_TO_A_UMLAUT) for f in forms}
    if long_enough:
        # Older Danish/Norwegian aa is å (Kærsgaard = Kærsgård, Aalborg = Ålborg).
        forms |= {_AA.sub(lambda m: "Å" if m.group(0)[0] == "A" else "å", f) for f in forms}
        # Norwegian/Danish write e where Swedish writes ä (fjell/fjäll, Skerholt/Skärholt).
        forms |= {f.translate(_AE_TO_E) for f in forms}
    # German/ASCII digraphs (Brückner -> Brueckner, Fjällhem -> Fjaellhem, Vård -> Vaard).
    forms |= {f.translate(_DIGRAPHS) for f in forms}
    return forms


_DIGRAPHS = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "å": "aa", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "Å": "Aa"}
)
_AE_TO_A_UMLAUT = str.maketrans({"æ": "ä", "Æ": "Ä"})
_AE_TO_E = str.maketrans({"ä": "e", "æ": "e", "Ä": "E", "Æ": "E"})
_AA = re.compile("[Aa]a")


def spellings(term: str) -> set[str]:
    """Every spelling of ``term`` the exact matcher should know (``term`` included).

    Handles (``@name``) are identifiers and only ever spelled one way.
    """
    term = term.strip()
    if not term or term.startswith("@"):
        return {term} if term else set()
    parts = _WORD_SPLIT.split(term)
    words = parts[::2]
    # Only a conjunction between two words stands for "&" (not a name that is "Og").
    per_word = [sorted(CONJUNCTIONS) if 0 < i < len(words) - 1 and w.casefold() in CONJUNCTIONS
                else sorted(_word_forms(w)) for i, w in enumerate(words)]
    out: set[str] = set()
    for combo in product(*per_word):
        out.add(" ".join(combo))
        if len(out) >= _MAX_SPELLINGS:
            break
    if len(words) > 1 and not term.startswith("#"):
        # A multi-word name written as one hyphenated compound (Saga-Vård,
        # Kvarnby-Bank-koncernen): the hyphen stands for the space.
        out |= {s.replace(" ", "-") for s in list(out)
                if not any(w.casefold() in CONJUNCTIONS for w in s.split())}
        # "Bröd & Smör" is also written "Bröd&Smör".
        out |= {s.replace(" & ", "&") for s in list(out) if " & " in s}
    return out


# --------------------------------------------------------------------------- #
# Typos
# --------------------------------------------------------------------------- #

# Keyboard rows (QWERTY; QWERTZ swaps y and z): a slip of the finger hits a
# neighbouring key. Row r's key c touches row r+1's keys c-1 and c.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, frozenset[str]]:
    near: dict[str, set[str]] = {}

    def link(a: str, b: str) -> None:
        near.setdefault(a, set()).add(b)
        near.setdefault(b, set()).add(a)

    for r, row in enumerate(_ROWS):
        for c, ch in enumerate(row):
            if c + 1 < len(row):
                link(ch, row[c + 1])
            if r + 1 < len(_ROWS):
                below = _ROWS[r + 1]
                for cc in (c - 1, c):
                    if 0 <= cc < len(below):
                        link(ch, below[cc])
    for a, b in (("z", "t"), ("z", "u"), ("z", "g"), ("z", "h"), ("y", "a"), ("y", "s"), ("y", "x")):
        link(a, b)
    return {k: frozenset(v) for k, v in near.items()}


KEY_NEIGHBOURS = _neighbours()


def _deletions(word: str) -> Iterable[str]:
    """The word and its one-letter deletions, never deleting the first letter."""
    yield word
    for i in range(1, len(word)):
        yield word[:i] + word[i + 1:]


def edit_kind(word: str, target: str) -> str | None:
    """How ``word`` is one edit from ``target``: ``"slip"`` (a neighbouring key hit
    instead, two letters swapped, a letter doubled or a double letter written
    once: what fingers do), ``"edit"`` (any other substitution, insertion or
    deletion), ``"ending"`` (a letter added after the last one), or None (no
    edit, more than one, or at the first letter).

    An ending is kept apart because it is usually an inflection (Nordviks,
    Pluton), handled by the matcher's suffix rules; only inside a multi-word
    name is it a typo (Solvikh Havbruk). A doubled last letter is a slip (Solvikk).
    """
    if word == target or len(word) < 2 or word[0] != target[0]:
        return None
    lw, lt = len(word), len(target)
    if lw == lt:
        diff = [i for i in range(lw) if word[i] != target[i]]
        if len(diff) == 1:
            i = diff[0]
            return "slip" if word[i] in KEY_NEIGHBOURS.get(target[i], ()) else "edit"
        if (len(diff) == 2 and diff[1] == diff[0] + 1
                and word[diff[0]] == target[diff[1]] and word[diff[1]] == target[diff[0]]):
            return "slip"
        return None
    if abs(lw - lt) != 1:
        return None
    longer, shorter = (word, target) if lw > lt else (target, word)
    i = 0
    while i < len(shorter) and longer[i] == shorter[i]:
        i += 1
    if longer[i + 1:] != shorter[i:]:
        return None
    # Letter i of the longer word is the extra one; with the first letters equal, i > 0.
    doubled = longer[i] == longer[i - 1] or (i + 1 < len(longer) and longer[i] == longer[i + 1])
    if lw > lt and i == lw - 1 and not doubled:
        return "ending"
    return "slip" if doubled else "edit"


class TypoIndex:
    """Watched name words by their one-deletion neighbourhood.

    ``lookup(word)`` returns the watched word that ``word`` is a typo of and
    the kind of typo (``edit_kind``; a slip only in a word of at least
    ``MIN_TYPO_LETTERS`` letters, else an edit), or None. A word that is itself watched is never
    a typo of another. Which typos count is the matcher's decision: any one
    edit inside a multi-word name (the other words anchor it), only a slip for
    a name of one word of at least ``MIN_TYPO_LETTERS`` letters.
    """

    def __init__(self, words: Iterable[str], spelled: Iterable[str] = ()) -> None:
        """``words``: the watched names' words as written; ``spelled``: the words of
        their other spellings, which are exact matches and so never typos."""
        words = {w for w in words if w}
        self._exact = words | set(spelled)
        self._by_deletion: dict[str, set[str]] = {}
        lengths: set[int] = set()
        for token in words:
            if len(token) < MIN_TYPO_WORD_LETTERS or not token.isalpha():
                continue
            lengths.update((len(token) - 1, len(token), len(token) + 1))
            for key in _deletions(token):
                self._by_deletion.setdefault(key, set()).add(token)
        self._lengths = frozenset(lengths)
        self._firsts = frozenset(k[0] for k in self._by_deletion)

    def __bool__(self) -> bool:
        return bool(self._by_deletion)

    def could_be_typo(self, word: str) -> bool:
        """The cheap pre-check that rules out almost every word of a post."""
        return len(word) in self._lengths and word[0] in self._firsts and word not in self._exact

    def lookup(self, word: str) -> tuple[str, str] | None:
        if not self.could_be_typo(word):
            return None
        found: dict[str, str] = {}
        for key in _deletions(word):
            for token in self._by_deletion.get(key, ()):
                if (kind := edit_kind(word, token)) is not None:
                    found[token] = kind
        # Two watched words one edit away: the word is not clearly either.
        if len(found) != 1:
            return None
        ((token, kind),) = found.items()
        return token, "edit" if kind == "slip" and len(token) < MIN_TYPO_LETTERS else kind
