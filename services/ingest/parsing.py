"""Request bodies to lists of raw items: one JSON object, a JSON array, or NDJSON.

Pure. The framing is all or nothing: a body that is not valid UTF-8 or not valid
JSON is refused whole, with the line, column and byte offset of the first
problem, so a client fixes it and resends everything; problems *inside* an item
are the per-item rejections of normalize.py.
"""

from __future__ import annotations

import json
from typing import Any

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines", "application/jsonlines"})
_BOM = "\ufeff"


class BodyError(ValueError):
    """The body cannot be read as posts; ``position`` locates the first problem."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 offset: int | None = None):
        super().__init__(message)
        self.message = message
        self.position = {k: v for k, v in (("line", line), ("column", column), ("byte_offset", offset))
                         if v is not None}

    def __str__(self) -> str:
        if not self.position:
            return self.message
        where = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.position.items())
        return f"{self.message} ({where})"


class TooManyItems(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"more than {limit} posts in one request; split the batch")
        self.limit = limit


def media_kind(content_type: str | None) -> str | None:
    """'ndjson', 'json', or None for a type this API does not read."""
    if not content_type:
        return "json"
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in NDJSON_TYPES:
        return "ndjson"
    if mime == "application/json" or mime.endswith("+json"):
        return "json"
    return None


def decode_utf8(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        line_start = body.rfind(b"\n", 0, e.start) + 1
        column = len(body[line_start:e.start].decode("utf-8", "replace")) + 1
        raise BodyError(f"body is not valid UTF-8: byte 0x{body[e.start]:02x} {e.reason}",
                        line=line, column=column, offset=e.start) from None
    return text[1:] if text.startswith(_BOM) else text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _json_error(e: Exception, text: str, line_base: int = 0, byte_base: int = 0,
                line: int | None = None) -> BodyError:
    if isinstance(e, json.JSONDecodeError):
        offset = byte_base + len(text[:e.pos].encode("utf-8", "surrogatepass"))
        return BodyError(f"invalid JSON: {e.msg}", line=line_base + e.lineno, column=e.colno,
                         offset=offset)
    if isinstance(e, RecursionError):
        return BodyError("invalid JSON: nested too deeply", line=line)
    return BodyError(f"invalid JSON: {e}", line=line)


def parse_json_body(body: bytes, max_items: int) -> list[Any]:
    """A JSON object (one post) or an array of posts."""
    text = decode_utf8(body)
    if not text.strip():
        raise BodyError("body is empty; send a JSON object, a JSON array or NDJSON")
    try:
        doc = _loads(text)
    except (ValueError, RecursionError) as e:
        raise _json_error(e, text) from None
    if isinstance(doc, dict):
        return [doc]
    if isinstance(doc, list):
        if len(doc) > max_items:
            raise TooManyItems(max_items)
        return doc
    raise BodyError("expected a JSON object (one post) or an array of posts")


def parse_ndjson_line(raw: bytes, lineno: int, byte_offset: int = 0) -> Any:
    """One NDJSON line; BodyError carries its line number and byte offset in the body."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        column = len(raw[:e.start].decode("utf-8", "replace")) + 1
        raise BodyError(f"not valid UTF-8: byte 0x{raw[e.start]:02x} {e.reason}", line=lineno,
                        column=column, offset=byte_offset + e.start) from None
    if lineno == 1 and text.startswith(_BOM):
        text = text[1:]
        byte_offset += 3
    try:
        return _loads(text)
    except (ValueError, RecursionError) as e:
        raise _json_error(e, text, line_base=lineno - 1, byte_base=byte_offset, line=lineno) from None


def parse_ndjson(body: bytes, max_items: int) -> list[Any]:
    """One JSON value per line; blank lines are skipped, CRLF is fine."""
    items: list[Any] = []
    offset = 0
    for lineno, raw in enumerate(body.split(b"\n"), start=1):
        start = offset
        offset += len(raw) + 1
        if not raw.strip():
            continue
        if len(items) == max_items:
            raise TooManyItems(max_items)
        items.append(parse_ndjson_line(raw, lineno, start))
    if not items:
        raise BodyError("body is empty; send one JSON post per line")
    return items


def parse_body(body: bytes, content_type: str | None, max_items: int) -> list[Any]:
    kind = media_kind(content_type)
    if kind == "ndjson":
        return parse_ndjson(body, max_items)
    return parse_json_body(body, max_items)
