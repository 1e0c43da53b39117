"""One raw item (a JSON object from the push API or a replay file) to a Post, or
the reason it cannot be one.

Pure: no I/O, the clock is a parameter. Every reason names the field and says
what would make the item acceptable, because it goes back to the caller as is.

Unknown fields are ignored, and named in the item's result (``ignored_fields``)
so a misspelled field (``txt``) does not vanish without a trace.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from lyssna.common.contracts import MAX_TEXT_CHARS, Post, content_post_id
from lyssna.common.pseudonyms import Pseudonymizer, is_pseudonym

#: Fields a pushed post may carry. ``schema`` and ``fetched_at`` are accepted so
#: that a dump of Post records replays unchanged, but ingest sets them itself.
KNOWN_FIELDS = frozenset({"id", "source", "url", "author", "author_key_id", "text", "created_at", "lang",
                          "lang_hint", "metadata", "schema", "fetched_at"})

_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$")
_MAX_ID = 512
_MAX_URL = 2048
_MAX_AUTHOR = 512
# Unix seconds between 1970 and 9999: anything else is a unit mistake (ms, µs).
_MAX_EPOCH = 253402300799
#: Below the broker's default message.max.bytes (about 1 MB) with room for key and headers.
MAX_RECORD_BYTES = 900_000


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an item was not accepted; ``payload`` is kept for the dead letter."""

    reason: str
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class Normalized:
    post: Post
    value: bytes                      # the post as it goes on the topic
    ignored_fields: tuple[str, ...] = field(default=())


class _Invalid(Exception):
    pass


def _unicode(name: str, v: str) -> str:
    # JSON may carry "\ud800" escapes that decode to unpaired surrogates: no
    # valid UTF-8 exists for them, so they cannot go on the topic.
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _Invalid(f"{name}: contains an unpaired surrogate escape (\\ud800-\\udfff) at "
                           f"character {e.start}; send valid Unicode") from None
    return v


def _opt_str(item: dict, name: str, limit: int) -> str | None:
    v = item.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _Invalid(f"{name}: must be a string, got {_type_name(v)}")
    if len(v) > limit:
        raise _Invalid(f"{name}: {len(v)} characters, the limit is {limit}")
    return _unicode(name, v)


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def parse_timestamp(v: Any, name: str = "created_at") -> datetime | None:
    """ISO 8601 text or Unix seconds to an aware UTC datetime; naive text is read as UTC."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise _Invalid(f"{name}: must be an ISO 8601 date-time or Unix seconds, got a boolean")
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or not 0 <= v <= _MAX_EPOCH:
            raise _Invalid(f"{name}: {v} is not Unix seconds between 1970 and 9999 "
                           f"(milliseconds? divide by 1000)")
        return datetime.fromtimestamp(v, tz=timezone.utc)
    if not isinstance(v, str):
        raise _Invalid(f"{name}: must be an ISO 8601 date-time or Unix seconds, got {_type_name(v)}")
    try:
        dt = datetime.fromisoformat(v.strip())
    except ValueError:
        raise _Invalid(f"{name}: {v[:40]!r} is not an ISO 8601 date-time "
                       f"(e.g. 2024-05-01T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _id(item: dict, prefix: str = "") -> str | None:
    v = item.get("id")
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise _Invalid(f"id: must be a string or an integer, got {_type_name(v)}")
    if not v.strip():
        raise _Invalid("id: is blank; omit it to have one derived from the content")
    limit = _MAX_ID - len(prefix)
    if len(v) > limit:
        raise _Invalid(f"id: {len(v)} characters, the limit is {limit}")
    return prefix + _unicode("id", v)


def client_id_prefix(namespace: str, source: str) -> str:
    """What a pushed post's own ``id`` is prefixed with: ``<namespace>/<source>/``.

    Ids are one space for every source (dedup, the topic's keys, alerts' counts),
    so a client's id is scoped: two sources' id ``"1"`` are two posts, and no
    client can send the id of a connector's post (``rss:…``, ``mastodon:…``,
    ``at://…``) or of another source's, to have it dropped as a duplicate. A
    source cannot contain ``/``, so the prefix is unambiguous.
    """
    return f"{namespace}/{source}/"


def _text(item: dict, max_chars: int) -> str:
    if "text" not in item or item["text"] is None:
        raise _Invalid("text: required")
    v = item["text"]
    if not isinstance(v, str):
        raise _Invalid(f"text: must be a string, got {_type_name(v)}")
    if not v.strip():
        raise _Invalid("text: is empty")
    if len(v) > max_chars:
        raise _Invalid(f"text: {len(v)} characters, the limit is {max_chars}; shorten or split it")
    return _unicode("text", v)


def _source(item: dict, default: str) -> str:
    v = item.get("source")
    if v is None:
        return default
    if not isinstance(v, str):
        raise _Invalid(f"source: must be a string, got {_type_name(v)}")
    v = v.strip().lower()
    if not _SOURCE.match(v):
        raise _Invalid("source: use 1-64 characters a-z, 0-9, '_', '.', ':' or '-' (e.g. 'http')")
    return v


def _url(item: dict) -> str | None:
    v = _opt_str(item, "url", _MAX_URL)
    if v is None:
        return None
    # Links end up in alerts sent to chat tools: only web links are passed on.
    if not v.lower().startswith(("http://", "https://")):
        raise _Invalid("url: must be an http:// or https:// URL")
    return v


def _lang(item: dict) -> str | None:
    name = "lang" if item.get("lang") is not None else "lang_hint"
    v = _opt_str(item, name, 16)
    if v is None:
        return None
    if not _LANG.match(v):
        raise _Invalid(f"{name}: {v!r} is not a language tag (e.g. 'sv', 'en-GB')")
    return v


def _metadata(item: dict) -> dict:
    v = item.get("metadata")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Invalid(f"metadata: must be an object, got {_type_name(v)}")
    return v


def normalize(item: Any, *, default_source: str, max_text_chars: int = MAX_TEXT_CHARS,
              now: datetime | None = None, id_namespace: str | None = None,
              authors: Pseudonymizer | None = None) -> Normalized | Rejection:
    """Validate one raw item and build the Post that goes on the topic.

    With ``authors`` the author handle is replaced by its pseudonym before
    anything is derived from it. Without an ``id`` the post gets
    ``content_post_id(source, author, text)``, so
    the same content sent twice is recognised as a duplicate. With
    ``id_namespace`` (untrusted clients: the push API) an ``id`` the item
    carries becomes ``client_id_prefix(id_namespace, source) + id``; without it
    (an operator's replay file) the id is taken as is.
    """
    if not isinstance(item, dict):
        return Rejection(f"item: must be a JSON object, got {_type_name(item)}")
    try:
        text = _text(item, min(max_text_chars, MAX_TEXT_CHARS))
        source = _source(item, default_source)
        author = _opt_str(item, "author", _MAX_AUTHOR)
        metadata = _metadata(item)
        key_id = None
        if authors is not None:
            # Before the content id: a plain hash of (author, text) would let anyone
            # holding the text test guessed handles against the id.
            author, metadata, key_id = pseudonymous_fields(author, metadata, authors,
                                                           authors.known_key(item.get("author_key_id")))
        prefix = client_id_prefix(id_namespace, source) if id_namespace is not None else ""
        post_id = _id(item, prefix) or content_post_id(source, author, text)
        fields: dict[str, Any] = {
            "id": post_id, "source": source, "text": text, "author": author, "author_key_id": key_id,
            "url": _url(item), "created_at": parse_timestamp(item.get("created_at")), "lang_hint": _lang(item),
            "metadata": metadata,
        }
    except _Invalid as e:
        return Rejection(str(e))
    if now is not None:
        fields["fetched_at"] = now
    return finish(Post, fields, ignored=_ignored(item))


#: Metadata that connectors fill with another person's handle (a boost's booster).
AUTHOR_METADATA_KEYS = ("boosted_by",)


def pseudonymous_fields(author: str | None, metadata: dict[str, Any], authors: Pseudonymizer,
                        given_key_id: str | None = None) -> tuple[str | None, dict[str, Any], str | None]:
    """``(author, metadata, author_key_id)`` with every handle replaced by its pseudonym;
    the key id is None when there was no handle. A value that is a pseudonym already
    (a replayed dump) is kept, with the key id it came with when that key is known."""
    def sign(v: str) -> str:
        return v if is_pseudonym(v) else authors(v)

    key_id = None
    if author is not None and author.strip():
        key_id = (given_key_id or authors.key_id) if is_pseudonym(author) else authors.key_id
        author = sign(author)
    else:
        author = None
    if any(isinstance(metadata.get(k), str) for k in AUTHOR_METADATA_KEYS):
        metadata = {k: sign(v) if k in AUTHOR_METADATA_KEYS and isinstance(v, str) else v
                    for k, v in metadata.items()}
        key_id = key_id or authors.key_id
    return author, metadata, key_id


def pseudonymous(n: Normalized, authors: Pseudonymizer | None) -> Normalized | Rejection:
    """A connector's post with its handles replaced (push items were already, in
    :func:`normalize`); a post that carries a key id is not signed twice."""
    post = n.post
    if authors is None or post.author_key_id is not None:
        return n
    if post.author is None and not any(k in post.metadata for k in AUTHOR_METADATA_KEYS):
        return n
    author, metadata, key_id = pseudonymous_fields(post.author, post.metadata, authors)
    post = post.model_copy(update={"author": author, "metadata": metadata, "author_key_id": key_id})
    try:
        return _sized(Normalized(post, post.to_bytes(), n.ignored_fields))
    except ValueError as e:
        return Rejection(f"post {post.id}: cannot be encoded: {e}")


def _ignored(item: dict) -> tuple[str, ...]:
    """Names of unknown fields, made safe to echo back (bounded, valid UTF-8)."""
    names = sorted(k for k in item if k not in KNOWN_FIELDS)
    if not names:
        return ()
    out = [n[:100].encode("utf-8", "backslashreplace").decode("utf-8") for n in names[:50]]
    if len(names) > 50:
        out.append(f"... and {len(names) - 50} more")
    return tuple(out)


def finish(model: type[Post], fields: dict[str, Any], ignored: tuple[str, ...] = ()) -> Normalized | Rejection:
    """Build and serialize the post; what the contract still refuses (an unpaired
    surrogate escape, say) becomes a rejection instead of an error."""
    try:
        post = model(**fields)
        return _sized(Normalized(post, post.to_bytes(), ignored))
    except (ValidationError, ValueError) as e:
        if isinstance(e, ValidationError) and e.errors():
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "item"
            what = ("contains an unpaired surrogate escape (\\ud800-\\udfff); send valid Unicode"
                    if err["type"] == "string_unicode" else err["msg"])
            return Rejection(f"{where}: {what}")
        detail = str(e)[:300].encode("utf-8", "backslashreplace").decode("utf-8")
        return Rejection(f"item: cannot be encoded: {detail}")


def from_post(post: Post) -> Normalized | Rejection:
    """A Post a connector built; serializing can still fail on odd metadata."""
    try:
        return _sized(Normalized(post, post.to_bytes()))
    except ValueError as e:
        return Rejection(f"post {post.id}: cannot be encoded: {e}")


def _sized(n: Normalized) -> Normalized | Rejection:
    if len(n.value) > MAX_RECORD_BYTES:
        return Rejection(f"item: {len(n.value)} bytes as a record, the limit is {MAX_RECORD_BYTES}; "
                         f"send less metadata")
    return n


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far a post's ``created_at`` may lie from when it was fetched.

    Alerts bucket posts by ``created_at``: a post dated next week would sit in a
    window that is not judged yet (and fire then, out of context), one dated
    1970 is a broken clock or a unit mistake. Such a time is replaced by the
    fetch time (see :func:`bounded_time`). ``max_skew`` allows for clocks a
    little ahead; ``max_age`` is generous on purpose: a feed's first poll or a
    backfill legitimately carries posts months or years old, and counting those
    as "now" would fire alerts of their own.
    """

    max_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=3650)


def implausible_time(created_at: datetime | None, fetched_at: datetime,
                     bounds: TimeBounds) -> str | None:
    """``"future"``, ``"too_old"`` or None (plausible, or no time at all)."""
    if created_at is None:
        return None
    if created_at.tzinfo is None:  # the contract allows it; read as UTC like parse_timestamp
        created_at = created_at.replace(tzinfo=timezone.utc)
    if created_at - fetched_at > bounds.max_skew:
        return "future"
    if fetched_at - created_at > bounds.max_age:
        return "too_old"
    return None


def bounded_time(n: Normalized, bounds: TimeBounds) -> tuple[Normalized | Rejection, str | None]:
    """The item with an implausible ``created_at`` replaced by its ``fetched_at``,
    and why it was replaced (None: kept as it was)."""
    why = implausible_time(n.post.created_at, n.post.fetched_at, bounds)
    if why is None:
        return n, None
    post = n.post.model_copy(update={"created_at": n.post.fetched_at})
    try:
        return _sized(Normalized(post, post.to_bytes(), n.ignored_fields)), why
    except ValueError as e:
        return Rejection(f"post {post.id}: cannot be encoded: {e}"), why

