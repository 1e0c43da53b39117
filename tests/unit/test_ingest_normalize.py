"""normalize(): raw pushed items to Posts, or a reason the caller can act on."""

import json
from datetime import datetime, timezone

import pytest

from lyssna.common.contracts import Post, content_post_id
from lyssna.ingest.normalize import Normalized, Rejection, from_post, normalize

NOW = datetime(2026, 5, 5, 12, 0, tzinfo=timezone.utc)


def ok(item, **kw) -> Normalized:
    out = normalize(item, default_source="http", now=NOW, **kw)
    assert isinstance(out, Normalized), out
    return out


def rejected(item, **kw) -> str:
    out = normalize(item, default_source="http", now=NOW, **kw)
    assert isinstance(out, Rejection), out
    return out.reason


def test_full_item_becomes_the_post_on_the_wire():
    n = ok({"id": "x-1", "source": "Mastodon", "url": "https://social.example/@a/1", "author": "a",
            "text": "Hej Acme", "created_at": "2026-05-01T10:00:00+02:00", "lang": "sv",
            "metadata": {"k": [1, 2]}})
    p = n.post
    assert (p.id, p.source, p.author, p.text, p.lang_hint) == ("x-1", "mastodon", "a", "Hej Acme", "sv")
    assert p.created_at == datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    assert p.fetched_at == NOW
    assert Post.from_bytes(n.value) == p
    assert json.loads(n.value)["schema"] == "lyssna.post.v1"
    assert n.ignored_fields == ()


def test_missing_id_is_derived_from_content_and_stable():
    a = ok({"text": "same words", "author": "bo"}).post
    b = ok({"text": "same words", "author": "bo", "url": "https://x.example/1"}).post
    assert a.id == b.id == content_post_id("http", "bo", "same words")
    assert ok({"text": "same words", "author": "other"}).post.id != a.id


def test_integer_id_is_kept_as_text():
    assert ok({"id": 12345, "text": "t"}).post.id == "12345"


def test_unknown_fields_are_ignored_and_named():
    n = ok({"text": "t", "txt": "typo", "likes": 3})
    assert n.ignored_fields == ("likes", "txt")
    assert "txt" not in n.value.decode()


def test_post_dump_replays_unchanged_fields():
    original = Post(id="p1", source="file", text="t", lang_hint="sv", metadata={"a": 1})
    n = ok(json.loads(original.to_bytes()))
    assert n.ignored_fields == ()
    assert (n.post.id, n.post.lang_hint, n.post.metadata) == ("p1", "sv", {"a": 1})


@pytest.mark.parametrize("item, reason", [
    ({}, "text: required"),
    ({"text": None}, "text: required"),
    ({"text": 5}, "text: must be a string, got a number"),
    ({"text": "   \n"}, "text: is empty"),
    ({"text": "t", "id": ""}, "id: is blank"),
    ({"text": "t", "id": True}, "id: must be a string or an integer, got a boolean"),
    ({"text": "t", "id": "x" * 513}, "id: 513 characters, the limit is 512"),
    ({"text": "t", "url": "javascript:alert(1)"}, "url: must be an http:// or https:// URL"),
    ({"text": "t", "author": ["a"]}, "author: must be a string, got an array"),
    ({"text": "t", "lang": "swedish please"}, "lang: 'swedish please' is not a language tag"),
    ({"text": "t", "source": "Not valid!"}, "source: use 1-64 characters"),
    ({"text": "t", "metadata": [1]}, "metadata: must be an object, got an array"),
    ({"text": "t", "created_at": "yesterday"}, "created_at: 'yesterday' is not an ISO 8601 date-time"),
    ({"text": "t", "created_at": 1746000000000}, "created_at: 1746000000000 is not Unix seconds"),
    ({"text": "t", "created_at": False}, "created_at: must be an ISO 8601 date-time or Unix seconds, got a boolean"),
    ([{"text": "t"}], "item: must be a JSON object, got an array"),
    ("text", "item: must be a JSON object, got a string"),
])
def test_rejections_name_the_field_and_the_fix(item, reason):
    assert rejected(item).startswith(reason)


def test_text_limit_comes_from_settings():
    assert ok({"text": "x" * 100}, max_text_chars=100)
    assert rejected({"text": "x" * 101}, max_text_chars=100) == \
        "text: 101 characters, the limit is 100; shorten or split it"


def test_unpaired_surrogate_escape_is_rejected_not_crashed():
    item = json.loads('{"text": "bad \\ud800 text"}')
    assert "unpaired surrogate" in rejected(item)
    item = json.loads('{"text": "ok", "metadata": {"k": "\\udfff"}}')
    assert rejected(item).startswith("item: cannot be encoded")


@pytest.mark.parametrize("value, expected", [
    ("2026-05-01T10:00:00Z", datetime(2026, 5, 1, 10, tzinfo=timezone.utc)),
    ("2026-05-01T10:00:00", datetime(2026, 5, 1, 10, tzinfo=timezone.utc)),  # naive = UTC
    ("2026-05-01", datetime(2026, 5, 1, tzinfo=timezone.utc)),
    (1746093600, datetime(2025, 5, 1, 10, tzinfo=timezone.utc)),
    (1746093600.5, datetime(2025, 5, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)),
])
def test_created_at_forms(value, expected):
    assert ok({"text": "t", "created_at": value}).post.created_at == expected


def test_lang_hint_alias_and_default_source():
    p = ok({"text": "t", "lang_hint": "nb-NO"}).post
    assert (p.lang_hint, p.source) == ("nb-NO", "http")
    assert normalize({"text": "t"}, default_source="file").post.source == "file"


def test_from_post_serializes_connector_posts():
    p = Post(id="rss:1", source="rss", text="hej")
    n = from_post(p)
    assert isinstance(n, Normalized) and Post.from_bytes(n.value) == p


def test_ignored_field_names_are_safe_to_echo():
    item = json.loads('{"text": "t", "\\ud800bad": 1}')
    (name,) = ok(item).ignored_fields
    name.encode("utf-8")  # would raise on an unpaired surrogate
    names = ok({"text": "t", **{f"f{i:03d}": i for i in range(60)}}).ignored_fields
    assert len(names) == 51 and names[-1] == "... and 10 more"


def test_oversized_record_is_rejected_before_kafka_would_refuse_it():
    reason = rejected({"text": "t", "metadata": {"blob": "x" * 1_000_000}})
    assert reason.startswith("item: ") and "the limit is 900000" in reason
