"""HTML fragments (feed summaries, Mastodon statuses) to plain text.

Classify reads words, not markup: tags are dropped, entities decoded, block
elements and ``<br>`` become line breaks so sentences do not run together.

A single left-to-right scan, linear in the fragment's length whatever it holds.
The standard library's ``HTMLParser`` was used before and is quadratic on
unterminated markup: a 20,000-character status of ``"<a " * 6666`` took 4 s,
so one hostile post from a Mastodon instance could stall the connector. Here
every step either consumes input or moves past it: a ``<`` that starts no tag
is text, an unterminated comment or ``<script>`` ends the fragment.
"""

from __future__ import annotations

import re
from html import unescape

_BLOCK = frozenset({"p", "div", "li", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3",
                    "h4", "h5", "h6", "tr", "table", "section", "article", "header", "footer"})
_SKIP = frozenset({"script", "style", "template"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BREAKS = re.compile(r"\n{3,}")
# A tag runs to the next '>' and holds no '<': a match attempt never reads past
# the next '<', so trying one at every '<' stays linear. (A '>' inside a quoted
# attribute value ends the tag early; feeds and Mastodon escape it as &gt;.)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>")


def _skip_to(fragment: str, haystack: str, needle: str, start: int) -> int:
    """Index just past the '>' that closes the first ``needle`` in ``haystack`` (the
    fragment, or its lower-case copy) at or after ``start`` (the end when there is none)."""
    k = haystack.find(needle, start)
    if k < 0:
        return len(fragment)
    end = fragment.find(">", k + len(needle) - 1)
    return len(fragment) if end < 0 else end + 1


def _pieces(fragment: str) -> list[str]:
    parts: list[str] = []
    lower = ""  # made on first need: only a <script>, <style> or <template> is searched case-blind
    i, n = 0, len(fragment)
    while i < n:
        j = fragment.find("<", i)
        if j < 0:
            parts.append(unescape(fragment[i:]))
            break
        if j > i:
            parts.append(unescape(fragment[i:j]))
        if fragment.startswith("<!--", j):
            end = fragment.find("-->", j + 4)
            i = n if end < 0 else end + 3
            continue
        m = _TAG.match(fragment, j)
        if m is None:
            if fragment.startswith(("<!", "<?"), j):  # doctype, CDATA marker, processing instruction
                i = _skip_to(fragment, fragment, ">", j)
            else:
                parts.append("<")  # a lone '<' is text ("a < b")
                i = j + 1
            continue
        closing, tag = m.group(1), m.group(2).lower()
        i = m.end()
        if tag in _SKIP and not closing and not m.group(0).endswith("/>"):
            lower = lower or fragment.lower()
            i = _skip_to(fragment, lower, f"</{tag}", i)
        elif tag == "br":
            parts.append("\n")
        elif tag in _BLOCK:
            parts.append("\n\n")
    return parts


def html_to_text(fragment: str | None) -> str:
    """Plain text of an HTML fragment; plain text passes through (entities decoded)."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return fragment.strip()
    text = "".join(_pieces(fragment))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BREAKS.sub("\n\n", "\n".join(lines)).strip()
