"""Dates as feeds write them, read strictly: a value that is not a real instant
is refused (None) instead of guessed.

feedparser's own date handlers are lenient in ways that put posts in the wrong
alert window: ``2003-12-31T25:14:55Z`` rolls over into the next day, a missing
month or day is filled from *today*, ``02:02:33 PM`` loses its PM, and a
lenient handler that matches a prefix wins over the one that understands the
whole string. Here every form is matched whole (``fullmatch``) and built with
``datetime(...)``, which refuses 25 o'clock, day 99 and month 13.

Forms read: W3DTF / ISO 8601 (``2003-12-31T10:14:55Z``, ``2003-12``, ``2003``,
a space instead of ``T``), the ISO 8601:1988 truncated forms with two-digit
years (``-0312``, ``03-12-31``, ``031231``, ``03335``), RFC 822 and its common
variants (no seconds, no time, two-digit years, an extra comma, named US and
Central European zones, ``GMT-01:01``, a 12-hour clock with AM/PM, month before
day, asctime), Perforce (``2006/09/15``), Greek and Hungarian month names, and
the two Korean blog formats feedparser knows.

A time without a zone comes back naive: the caller reads it in the zone of the
feed's own dates (see rss.py), else as UTC. Pure; all patterns are anchored,
without nested repetition, and the input is capped, so matching is linear.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone

#: Longer strings are not dates (and are not worth matching).
MAX_DATE_CHARS = 80

_MONTHS = {
    # English, short and long
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
    "january": 1, "february": 2, "march": 3, "april": 4, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    # Greek abbreviations, accents removed (see _fold)
    "ιαν": 1, "φεβ": 2, "μαρ": 3, "μαρτ": 3, "απρ": 4, "μαι": 5, "μαιος": 5, "ιουν": 6, "ιον": 6,
    "ιουλ": 7, "ιολ": 7, "αυγ": 8, "σεπ": 9, "σεπτ": 9, "οκτ": 10, "νοε": 11, "νοεμ": 11, "δεκ": 12,
    # Hungarian, accents removed
    "januar": 1, "februar": 2, "marcius": 3, "aprilis": 4, "majus": 5, "junius": 6, "julius": 7,
    "augusztus": 8, "szeptember": 9, "oktober": 10,
}

_ZONES = {
    "z": 0, "ut": 0, "utc": 0, "gmt": 0, "etc/gmt": 0, "etc/utc": 0,
    # North America (RFC 822 names, and the bare forms feeds use)
    "est": -5, "edt": -4, "cst": -6, "cdt": -5, "mst": -7, "mdt": -6, "pst": -8, "pdt": -7,
    "ast": -4, "adt": -3, "at": -4, "et": -5, "ct": -6, "mt": -7, "pt": -8,
    # Europe
    "wet": 0, "west": 1, "cet": 1, "cest": 2, "met": 1, "mest": 2, "eet": 2, "eest": 3,
}

_W3DTF = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>0?\d{2})(?:-(?P<d>\d{2})"
    r"(?:[Tt ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d{1,9})?)?"
    r" ?(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?)?)?)?")
# ISO 8601:1988 truncated forms, two-digit years. An all-digit string is read
# this way only when it starts with 0: otherwise it is a (too long) year.
_ISO_SHORT = (
    re.compile(r"-(?P<y>\d{2})-?(?P<m>\d{2})"),                   # -YYMM, -YY-MM
    re.compile(r"(?P<y>\d{2})-(?P<m>\d{2})-(?P<d>\d{2})"),         # YY-MM-DD
    re.compile(r"(?P<y>0\d)(?P<m>\d{2})(?P<d>\d{2})"),             # YYMMDD
    re.compile(r"(?P<y>0\d)(?P<o>\d{3})"),                         # YYDDD (ordinal)
)
_TIME = r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?: ?(?P<ap>[AaPp][Mm]))?"
_ZONE = r"(?P<tz>[+-]\d{2}:?\d{2}|[A-Za-z]{1,5}(?:/[A-Za-z]{1,5})?(?:[+-]\d{2}:?\d{2})?)"
_WDAY = r"(?:[^\W\d_]{2,12}\.? ?, ?|[^\W\d_]{2,12} )?"
_RFC822 = (
    # [Wdy,] DD Mon[,] YYYY [HH:MM[:SS] [AM|PM]] [zone]
    re.compile(_WDAY + r"(?P<d>\d{1,2}) (?P<mon>[^\W\d_]{3,12})\.?,? (?P<y>\d{4}|\d{2})"
               r"(?: " + _TIME + r")?(?: " + _ZONE + r")?"),
    # [Wdy,] Mon DD[,] YYYY [HH:MM[:SS] [AM|PM]] [zone]  (month first)
    re.compile(_WDAY + r"(?P<mon>[^\W\d_]{3,12})\.? (?P<d>\d{1,2}),? (?P<y>\d{4})"
               r"(?: " + _TIME + r")?(?: " + _ZONE + r")?"),
    # asctime: Wdy Mon DD HH:MM:SS [zone] YYYY
    re.compile(_WDAY + r"(?P<mon>[^\W\d_]{3,12}) (?P<d>\d{1,2}) " + _TIME + r"(?: " + _ZONE + r")? (?P<y>\d{4})"),
    # Perforce: [Wdy,] YYYY/MM/DD HH:MM:SS [zone]
    re.compile(_WDAY + r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2}) " + _TIME + r"(?: " + _ZONE + r")?"),
    # Hungarian: YYYY-<month name>-DTH:MM±HH:MM
    re.compile(r"(?P<y>\d{4})-(?P<mon>[^\W\d_]{3,12})-(?P<d>\d{1,2})T" + _TIME + _ZONE),
)
# Korean blogs (feedparser's "nate" and "onblog"), Korea Standard Time.
_KOREAN = (
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2}) (?P<ap>오전|오후) (?P<H>\d{1,2}):(?P<M>\d{2}):(?P<S>\d{2})"),
    re.compile(r"(?P<y>\d{4})년 (?P<m>\d{2})월 (?P<d>\d{2})일 (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})"),
)
_KST = timezone(timedelta(hours=9))
_SPACES = re.compile(r"\s+")
_NUMERIC_ZONE = re.compile(r"(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})")


class _Bad(ValueError):
    pass


def _fold(word: str) -> str:
    """Lower case without accents: 'Ιούλ' -> 'ιουλ', 'július' -> 'julius'."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _numeric_zone(text: str) -> timezone:
    m = _NUMERIC_ZONE.fullmatch(text)
    if not m:
        raise _Bad(text)
    h, mi = int(m["h"]), int(m["m"])
    if h > 23 or mi > 59:
        raise _Bad(text)
    delta = timedelta(hours=h, minutes=mi)
    return timezone(-delta if m["sign"] == "-" else delta)


def _zone(text: str | None) -> timezone | None:
    """A zone name or offset; None when absent; _Bad when unknown (refused, not guessed)."""
    if not text:
        return None
    if text[0] in "+-":
        return _numeric_zone(text)
    name, sep, offset = text.partition("+") if "+" in text else text.partition("-")
    base = _ZONES.get(name.lower())
    if base is None:
        raise _Bad(text)
    zone = timezone(timedelta(hours=base))
    if sep:  # GMT-01:01
        return timezone(zone.utcoffset(None) + _numeric_zone(sep + offset).utcoffset(None))
    return zone


def _year(text: str) -> int:
    y = int(text)
    if len(text) == 2:  # RFC 2822 section 4.3
        y += 2000 if y < 50 else 1900
    return y


def _hour(h: int, ampm: str | None) -> int:
    if ampm is None:
        return h
    if not 1 <= h <= 12:
        raise _Bad(f"{h} {ampm}")
    pm = ampm.lower() in ("pm", "오후")
    return (h % 12) + (12 if pm else 0)


def _build(g: dict, tz: timezone | None) -> datetime:
    month = g.get("m")
    month = int(month) if month else (_MONTHS.get(_fold(g["mon"])) if g.get("mon") else 1)
    if month is None:
        raise _Bad(g.get("mon"))
    hour = _hour(int(g.get("H") or 0), g.get("ap"))
    dt = datetime(_year(g["y"]), month, int(g.get("d") or 1), hour, int(g.get("M") or 0),
                  int(g.get("S") or 0))
    return dt.replace(tzinfo=tz) if tz is not None else dt


def _parse(s: str) -> datetime | None:
    m = _W3DTF.fullmatch(s)
    if m:
        tz = m["tz"]
        return _build(m.groupdict(), timezone.utc if tz in ("Z", "z") else _zone(tz))
    for pattern in _ISO_SHORT:
        m = pattern.fullmatch(s)
        if m:
            g = m.groupdict()
            if g.get("o"):
                return datetime(_year(g["y"]), 1, 1) + timedelta(days=_ordinal(g["o"]) - 1)
            return _build(g, None)
    for pattern in _RFC822:
        m = pattern.fullmatch(s)
        if m:
            return _build(m.groupdict(), _zone(m["tz"]))
    for pattern in _KOREAN:
        m = pattern.fullmatch(s)
        if m:
            return _build(m.groupdict(), _KST)
    return None


def _ordinal(text: str) -> int:
    day = int(text)
    if not 1 <= day <= 366:
        raise _Bad(text)
    return day


def parse_feed_date(value: object) -> datetime | None:
    """A feed's date string as a datetime (aware when it names a zone, naive when
    not), or None when it is not one real instant."""
    if not isinstance(value, str):
        return None
    s = _SPACES.sub(" ", value.strip())
    if not s or len(s) > MAX_DATE_CHARS:
        return None
    try:
        dt = _parse(s)
    except (_Bad, ValueError, OverflowError):
        return None
    if dt is not None and dt.tzinfo is not None:
        try:  # an offset may push a date at the edge out of datetime's range
            dt.astimezone(timezone.utc)
        except OverflowError:
            return None
    return dt


def to_utc(dt: datetime | None, default_zone: timezone = timezone.utc) -> datetime | None:
    """Aware UTC; a naive value is read in ``default_zone``. None when out of range."""
    if dt is None:
        return None
    try:
        return (dt if dt.tzinfo else dt.replace(tzinfo=default_zone)).astimezone(timezone.utc)
    except OverflowError:
        return None
