"""Request bodies to items: JSON object / array / NDJSON, and where they break."""

import pytest

from lyssna.ingest.parsing import (
    BodyError, TooManyItems, decode_utf8, media_kind, parse_body, parse_json_body, parse_ndjson,
)


def test_object_array_and_ndjson():
    assert parse_body(b'{"text": "a"}', "application/json", 10) == [{"text": "a"}]
    assert parse_body(b'[{"text": "a"}, 3]', "application/json; charset=utf-8", 10) == [{"text": "a"}, 3]
    body = b'{"text": "a"}\r\n\n  \n{"text": "b"}\n'
    assert parse_body(body, "application/x-ndjson", 10) == [{"text": "a"}, {"text": "b"}]
    assert parse_body(b'[]', None, 10) == []


@pytest.mark.parametrize("ctype, kind", [
    (None, "json"), ("application/json", "json"), ("application/vnd.api+json", "json"),
    ("application/x-ndjson", "ndjson"), ("application/jsonl; charset=utf-8", "ndjson"),
    ("text/plain", None), ("multipart/form-data; boundary=x", None),
])
def test_media_kinds(ctype, kind):
    assert media_kind(ctype) == kind


def test_invalid_utf8_gives_line_column_and_byte_offset():
    body = '{"text": "ok"}\n{"text": "bå'.encode() + b"\xff" + b'"}'
    with pytest.raises(BodyError) as e:
        decode_utf8(body)
    assert e.value.position == {"line": 2, "column": 13, "byte_offset": len(body) - 3}
    assert "not valid UTF-8" in str(e.value)
    with pytest.raises(BodyError) as e:
        parse_ndjson(body, 10)
    assert e.value.position == {"line": 2, "column": 13, "byte_offset": len(body) - 3}


def test_invalid_json_position():
    with pytest.raises(BodyError) as e:
        parse_json_body(b'[\n  {"text": "a"},\n  {"text": "b",}\n]', 10)
    assert e.value.position["line"] == 3
    assert e.value.position["column"] == 16
    assert str(e.value).startswith("invalid JSON: ")


def test_ndjson_error_points_at_its_line_and_body_offset():
    body = b'{"text": "a"}\n{"text": "b"}\n{"text": "c"\n'
    with pytest.raises(BodyError) as e:
        parse_ndjson(body, 10)
    assert e.value.position == {"line": 3, "column": 13, "byte_offset": 28 + 12}


def test_bom_is_tolerated():
    assert parse_json_body("\ufeff{\"text\": \"a\"}".encode(), 10) == [{"text": "a"}]
    assert parse_ndjson("\ufeff{\"text\": \"a\"}\n".encode(), 10) == [{"text": "a"}]


@pytest.mark.parametrize("body", [b"NaN", b'{"text": "a", "x": Infinity}', b'[-Infinity]'])
def test_non_standard_constants_are_invalid(body):
    with pytest.raises(BodyError):
        parse_json_body(body, 10)


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(BodyError, match="nested too deeply"):
        parse_json_body(b"[" * 100_000 + b"]" * 100_000, 10)
    with pytest.raises(BodyError) as e:
        parse_ndjson(b'{"text": "a"}\n' + b"[" * 100_000, 10)
    assert e.value.position["line"] == 2


@pytest.mark.parametrize("body, message", [
    (b"", "body is empty"), (b"  \n", "body is empty"), (b'"text"', "expected a JSON object"),
    (b"42", "expected a JSON object"),
])
def test_json_bodies_that_hold_no_posts(body, message):
    with pytest.raises(BodyError, match=message):
        parse_json_body(body, 10)


def test_empty_ndjson():
    with pytest.raises(BodyError, match="body is empty"):
        parse_ndjson(b"\n\n", 10)


def test_batch_length_limit():
    with pytest.raises(TooManyItems):
        parse_json_body(b"[1, 2, 3]", 2)
    with pytest.raises(TooManyItems):
        parse_ndjson(b"1\n2\n3\n", 2)
    assert parse_ndjson(b"1\n2\n", 2) == [1, 2]
