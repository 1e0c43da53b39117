"""A push client's ids are scoped to where they come from, and every post's
created_at is held to plausible bounds before alerts bucket by it."""

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.common.contracts import Post
from lyssna.ingest.normalize import (
    Normalized, Rejection, TimeBounds, bounded_time, client_id_prefix, from_post, implausible_time, normalize,
)
from lyssna.ingest.pipeline import id_namespace

NOW = datetime(2026, 5, 5, 12, 0, tzinfo=timezone.utc)
BOUNDS = TimeBounds(max_skew=timedelta(minutes=5), max_age=timedelta(days=365))


def pushed(item: dict, namespace: str = "http") -> Normalized:
    out = normalize(item, default_source="http", now=NOW, id_namespace=namespace)
    assert isinstance(out, Normalized), out
    return out


def test_pushed_ids_are_scoped_by_source():
    a = pushed({"id": "1", "source": "crm", "text": "Acme"}).post.id
    b = pushed({"id": "1", "source": "intranet", "text": "Acme"}).post.id
    c = pushed({"id": 1, "text": "Acme"}).post.id
    assert (a, b, c) == ("http/crm/1", "http/intranet/1", "http/http/1")


@pytest.mark.parametrize("claimed", [
    "rss:0123456789abcdef0123456789abcdef",
    "mastodon:https://social.example.se/users/lena/statuses/1",
    "at://did:plc:abc/app.bsky.feed.post/3k",
    "sha256:0123456789abcdef0123456789abcdef",
])
def test_a_client_cannot_take_a_connector_or_content_id(claimed):
    for source in (None, "rss", "mastodon", "at", "bluesky"):
        item = {"id": claimed, "text": "t", **({"source": source} if source else {})}
        assert pushed(item).post.id != claimed


def test_sources_cannot_be_confused_through_the_separator():
    # source "a" + id "b/1" and source "a:b" + id "1" must stay apart; '/' is not a source character
    x = pushed({"id": "b/1", "source": "a", "text": "t"}).post.id
    y = pushed({"id": "1", "source": "a:b", "text": "t"}).post.id
    assert x != y
    assert normalize({"id": "1", "source": "a/b", "text": "t"}, default_source="http",
                     id_namespace="http") == Rejection(
        "source: use 1-64 characters a-z, 0-9, '_', '.', ':' or '-' (e.g. 'http')")


def test_scoped_id_length_limit_counts_the_prefix():
    limit = 512 - len(client_id_prefix("http", "http"))
    assert len(pushed({"id": "x" * limit, "text": "t"}).post.id) == 512
    out = normalize({"id": "x" * (limit + 1), "text": "t"}, default_source="http", id_namespace="http")
    assert out == Rejection(f"id: {limit + 1} characters, the limit is {limit}")


def test_content_ids_and_replay_ids_are_not_scoped():
    # the derived id already names the source; a replay file is the operator's own
    derived = pushed({"text": "same", "author": "bo"}).post.id
    assert derived.startswith("sha256:")
    replayed = normalize({"id": "replay-1", "text": "t"}, default_source="file")
    assert replayed.post.id == "replay-1"


def test_id_namespace_with_a_client_name():
    assert id_namespace("http") == "http"
    assert id_namespace("http", "crm-sync") == "http@crm-sync"
    assert pushed({"id": "1", "text": "t"}, namespace=id_namespace("http", "crm-sync")).post.id == \
        "http@crm-sync/http/1"
    with pytest.raises(ValueError):
        id_namespace("http", "a/b")


@pytest.mark.parametrize("created_at, why", [
    (NOW, None),
    (None, None),
    (NOW + timedelta(minutes=5), None),                 # within the skew
    (NOW + timedelta(minutes=5, seconds=1), "future"),
    (NOW + timedelta(days=400), "future"),
    (NOW - timedelta(days=365), None),
    (NOW - timedelta(days=365, seconds=1), "too_old"),
    (datetime(1970, 1, 1, tzinfo=timezone.utc), "too_old"),
    (datetime(2026, 5, 5, 12, 10), "future"),           # naive: read as UTC
])
def test_implausible_time(created_at, why):
    assert implausible_time(created_at, NOW, BOUNDS) == why


def test_an_implausible_time_is_replaced_by_the_fetch_time():
    n = pushed({"id": "1", "text": "t", "created_at": "2099-01-01T00:00:00Z", "mood": "x"})
    fixed, why = bounded_time(n, BOUNDS)
    assert why == "future"
    assert fixed.post.created_at == fixed.post.fetched_at == NOW
    assert Post.from_bytes(fixed.value) == fixed.post
    assert fixed.ignored_fields == ("mood",)

    sane = pushed({"id": "2", "text": "t", "created_at": "2026-05-05T11:00:00Z"})
    assert bounded_time(sane, BOUNDS) == (sane, None)

    old = from_post(Post(id="rss:1", source="rss", text="t", fetched_at=NOW, created_at=datetime(1, 1, 1)))
    assert bounded_time(old, BOUNDS)[0].post.created_at == NOW


def test_the_ingest_app_takes_its_time_bounds_from_the_settings():
    from lyssna.common.config import load_settings
    from lyssna.ingest.app import build_state
    from lyssna.ingest.normalize import TimeBounds as Bounds

    settings = load_settings(None, env={"LYSSNA_API_KEY": "k"})
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(
        update={"max_clock_skew": timedelta(hours=2), "max_post_age": timedelta(days=30)})})
    state = build_state(settings)
    assert state.pipeline.time_bounds == Bounds(timedelta(hours=2), timedelta(days=30))
