"""Hostile post texts: worst cases for every pattern and loop that sees post text.

Shared by the unit tests (tests/unit/test_adversarial_text.py: correct and no
exception), the benchmark (bench/bench_adversarial.py: time per post) and the
end-to-end test (tests/e2e/test_hostile_post.py: the worst one through the
running stack). Each text is at most MAX_TEXT_CHARS, the longest a post may be,
because that is what a client can send.

What each family attacks (the modules that see post text are
classify/textspans.py, mentions.py and langid.py):
  - links: the URL, e-mail and bare-domain alternatives on long runs of the
    characters they repeat ("Acme." * 4000 was quadratic: the e-mail local part
    had no left anchor), and on near-misses that make them backtrack;
  - handles and words: langid's handle/hashtag alternative and its word pattern
    on runs of "@", "#", apostrophes and hyphens between letters;
  - matcher: thousands of candidate names in one token, suffix scans, offset
    maps from folds that change length, combining marks after a name;
  - text: 20,000-character single tokens, deep emoji/ZWJ sequences, mixed
    scripts, NUL and control characters, lone surrogates.
"""

from __future__ import annotations

from dataclasses import dataclass

from lyssna.common.contracts import MAX_TEXT_CHARS

__all__ = ["HostilePost", "WATCH_NAME", "WORST", "corpus", "by_name"]

# The watched name the texts are built around by default: the example
# watchlist (services/classify/training/data/watchlist.yaml) aliases Acme Robotics so.
WATCH_NAME = "Acme"
# The post of the issue that stopped classification ("Acme." * 4000): a
# 20,000-character token holding 4,000 names, each of which made the old
# matcher rerun a quadratic pattern; with the fix still among the slowest.
WORST = "acme-dot-run"


@dataclass(frozen=True)
class HostilePost:
    name: str
    text: str
    # Whether the watched name must be found (True) or must not be (False):
    # as a word outside any link, or only glued to letters or inside links.
    # None where the text makes no such promise.
    mentions_name: bool | None = None

    @property
    def utf8(self) -> bool:
        """Whether the text can travel as UTF-8 JSON (lone surrogates cannot)."""
        try:
            self.text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


def _fill(unit: str, *, head: str = "", tail: str = "") -> str:
    """``head + unit * k + tail``, exactly MAX_TEXT_CHARS long (the last unit cut short)."""
    room = MAX_TEXT_CHARS - len(head) - len(tail)
    return head + (unit * (room // len(unit) + 1))[:room] + tail


_SENTENCE = "Alla på {n} är trötta, lönen är usel och ledningen lyssnar inte på oss. "
_ZWJ_FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # 👩‍👩‍👧‍👦
_MIXED = "{n} Ωμέγα Россия 北京 عربى हिन्दी ไทย 한국어 עברית "


def corpus(name: str = WATCH_NAME) -> list[HostilePost]:
    """Every hostile post, in a fixed order, built around the watched ``name``."""
    P = HostilePost
    n, lo = name, name.lower()
    return [
        # ------------------------------------------------ links: runs the patterns repeat
        P("acme-dot-run", _fill(f"{n}."), True),  # the post: quadratic e-mail local part
        P("acme-dot-spaced", _fill(f"{n}. "), True),
        P("at-run", _fill("a@")),
        P("dot-run", _fill("a.")),
        P("hyphen-run", _fill("-")),  # bare-domain labels started at every hyphen
        P("hyphen-letter-run", _fill("a-")),
        P("www-run", _fill("www.")),
        P("http-run", _fill("http://")),
        P("scheme-near-miss", _fill("http:/")),
        P("email-like-run", _fill("x@y.")),
        P("email-local-run", _fill("a.b+c-", tail="@")),
        P("email-domain-near-miss", _fill("a-", head="x@")),
        P("email-then-dot-run", _fill(f"{n}.", head="x@y"), False),  # one e-mail address
        P("plus-run", _fill("a+")),
        P("dot-hyphen-run", _fill(".-")),
        P("domain-no-tld", _fill(f"{lo}.", tail="x")),
        P("domain-tld-prefix", _fill("a.co", tail="mx")),  # "co"/"com" both tried at each label
        P("domain-long-valid", _fill(".x", head="x", tail=".se")),
        P("domain-path-run", _fill("/a", head=f"{lo}.se")),
        P("acme-at-run", _fill(f"{n}@"), True),
        P("acme-se-run", _fill(f"{n}.se."), False),  # one long domain
        P("acme-url-and-name", _fill(f"https://{lo}.se/jobb ", tail=f" {n}"), True),
        P("acme-dot-hyphen-run", _fill(f"{n}.-"), True),
        P("angle-url-run", _fill("www.<")),
        # ------------------------------------------------ langid: handles, hashtags, words
        P("hash-run", _fill("#")),
        P("handle-run", _fill("@")),
        P("handle-letter-run", _fill("@a")),
        P("hashtag-acme-run", _fill(f"#{lo} "), True),
        P("handle-acme-run", _fill(f"@{lo} "), True),
        P("apostrophe-run", _fill("'")),
        P("apostrophe-word-run", _fill("a'")),
        P("hyphen-apostrophe-word-run", _fill("a'-")),
        P("typographic-apostrophe-run", _fill("a\u2019")),
        P("digit-letter-run", _fill("a1")),
        # ------------------------------------------------ matcher: candidates, suffixes, offsets
        P("acme-spaced-run", _fill(f"{n} "), True),
        P("acme-glued-run", _fill(n), False),  # no boundary anywhere: no mention
        P("acme-colon-run", _fill(f"{n}:"), True),
        P("acme-genitive-run", _fill(f"{n}'s "), True),
        P("acme-long-suffix", _fill("s", head=n), False),
        P("acme-combining-marks", _fill("\u0301", head=n)),
        P("multiword-run", _fill("Kvarnby Bank ")),
        P("expanding-fold-run", _fill(f"ß {n} "), True),  # ß -> ss: an offset map over the whole text
        P("whitespace-run", _fill(" \u00a0\t\n", tail=n), True),
        P("soft-hyphen-run", _fill("\u00ad", head=n[:2], tail=n[2:]), True),
        # ------------------------------------------------ text: tokens, emoji, scripts, controls
        P("single-token-letters", _fill("a")),
        P("single-token-mixed", _fill("aZ9_ä-.")),
        P("long-sentence", _fill(_SENTENCE.format(n=n)), True),
        P("zwj-family-run", _fill(_ZWJ_FAMILY, head=f"{n} "), True),
        P("zwj-deep", _fill("\u200d\U0001F469", head=f"{n} \U0001F469"), True),
        P("skin-tone-run", _fill("\U0001F44D\U0001F3FD")),
        P("flag-run", _fill("\U0001F1F8\U0001F1EA", head=f"{n} "), True),
        P("variation-selector-run", _fill("\u2764\ufe0f", head=n), True),
        P("mixed-scripts", _fill(_MIXED.format(n=n)), True),
        P("rtl-override", _fill(f"\u202e{n}\u202c "), True),
        P("nul-run", _fill("\x00", head=f"{n} "), True),
        P("controls", _fill("".join(map(chr, [*range(1, 32), *range(127, 160)])) + f"{n} "), True),
        P("lone-surrogates", _fill(f"\ud800{n} \udfff"), True),
        P("surrogate-run", _fill("\udc00", head=f"{n} "), True),
    ]


def by_name(post: str, name: str = WATCH_NAME) -> HostilePost:
    return next(p for p in corpus(name) if p.name == post)
