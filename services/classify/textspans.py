"""URLs, e-mail addresses and bare domains in post text: one pattern, one pass.

Mention matching (a name inside a link is not a mention) and language id (links
carry no language) both need to know where the links are; they share this one
definition so that they agree on what a link is.

Post text is hostile input: ``"Acme." * 4000`` is a valid post. Every
alternative below therefore does work proportional to the text, whatever it
holds. The rule that keeps it linear: an alternative that starts with a
repeated character class may only start where that class's run starts (a
lookbehind on the same class), so each run is scanned by at most one attempt,
and its repeated parts are separated by a character they cannot match, so a
failed attempt backtracks through the run once instead of re-splitting it.
Without the lookbehinds the e-mail alternative rescans the rest of the run
from every position (quadratic; with the old per-name rescan on top,
"Acme." * 800 took 60 s), and the domain alternative does the same on runs
of hyphens.

The anchored form finds the same links as the unanchored one did, save one
case: a label run right after "@" or "." with a hyphen in it (".hr-acme.se")
used to count from after the hyphen ("acme.se") and is now no link at all. A
real domain or address does not start with a hyphen-joined label glued to a
dot, so the simple linear form was kept rather than a second pass for it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

__all__ = ["LINK_PATTERN", "TLDS", "link_spans", "overlaps"]

# Top-level domains that make a bare "name.tld" a link: those Nordic, German
# and English posts use. A closed list, because with any word accepted a
# sentence run on after a full stop ("klart.Sedan") would read as a domain.
TLDS: tuple[str, ...] = ("se", "no", "dk", "fi", "de", "at", "ch", "com", "net", "org", "io", "eu", "nu",
                         "co", "uk", "ai", "app", "info", "biz")

# Compile with re.IGNORECASE | re.VERBOSE. Kept as a string so that langid can
# add its handle/hashtag alternative to the same single pass.
LINK_PATTERN = r"""
    (?:https?://|www\.)[^\s<>"]+                 # URLs: fixed prefix, then one greedy run
    | (?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+   # e-mail: the local part starts where its run starts
    | (?<![\w@.-])(?:[\w-]+\.)+                  # bare domains: labels start where their run starts
      (?:""" + "|".join(TLDS) + r""")
      (?!\w)(?:/[^\s<>"]*)?
"""

_LINK_RE = re.compile(LINK_PATTERN, re.IGNORECASE | re.VERBOSE)


def link_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every link in ``text``, sorted and non-overlapping.

    Computed once per text and then queried with :func:`overlaps`, so a post
    with thousands of candidate names costs one pass, not one per name.
    """
    return [m.span() for m in _LINK_RE.finditer(text)]


def overlaps(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    """Whether ``text[start:end]`` overlaps one of ``spans`` (from :func:`link_spans`)."""
    # The last span starting before ``end`` is the only candidate: spans are
    # sorted and disjoint, so every earlier one also ends earlier.
    i = bisect.bisect_left(spans, (end,)) - 1
    return i >= 0 and spans[i][1] > start
