"""The pure halves of the connectors: payloads in each source's wire format to
Posts, the retry schedule, and HTML to text."""

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lyssna.common.contracts import Post
from lyssna.ingest.connectors.base import backoff_delay, clip_text, connector_name
from lyssna.ingest.connectors.bluesky import event_to_post, subscribe_url
from lyssna.ingest.connectors.mastodon import id_order, status_to_post
from lyssna.ingest.connectors.rss import entry_id, parse_feed
from lyssna.ingest.html_text import html_to_text
from lyssna.ingest.normalize import Rejection

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
UTC = timezone.utc


# ------------------------------------------------------------------ html

@pytest.mark.parametrize("html, text", [
    ("plain &amp; simple", "plain & simple"),
    ("no markup at all", "no markup at all"),
    ("<p>One</p><p>Two&nbsp;words</p>", "One\n\nTwo words"),
    ("line<br>break<br/>again", "line\nbreak\nagain"),
    ('<a href="x" class="mention">@<span>acme</span></a> hi', "@acme hi"),
    ("<p>x</p><script>alert(1)</script><style>p{}</style>", "x"),
    ("&#229;&auml; &lt;tag&gt;", "åä <tag>"),
    ("a < b and c<d", "a < b and c<d"),
    ("<P>Upper</P><BR>case<SCRIPT>x()</SCRIPT>", "Upper\n\ncase"),
    ("before<!-- a <p> comment -->after", "beforeafter"),
    ("kept<!-- never closed <p>dropped", "kept"),
    ("<!DOCTYPE html><?xml version='1.0'?>text", "text"),
    ("x<script>never closed <p>dropped", "x"),
    ("<br />one<br/>two", "one\ntwo"),
    ("", ""),
    (None, ""),
])
def test_html_to_text(html, text):
    assert html_to_text(html) == text


@pytest.mark.parametrize("hostile, expected", [
    # Unterminated markup that made html.parser quadratic (minutes at this size).
    ("<a " * 66_666, "<a " * 66_666),
    ("<a b='" * 30_000, None),
    ("<!--" * 50_000, ""),
    ("<p" * 100_000, None),
    ("<p>" * 70_000 + "Acme", "Acme"),
    ("&" * 200_000, "&" * 200_000),
])
def test_hostile_markup_is_read_in_one_pass(hostile, expected):
    text = html_to_text(hostile)
    if expected is not None:
        assert text == expected.strip()
    assert len(text) <= len(hostile)


# ------------------------------------------------------------------ rss / atom

def feed(name: str, url: str = "https://feeds.example/x.xml") -> list:
    return parse_feed((FEEDS / name).read_bytes(), feed_url=url, content_type="application/rss+xml")


def test_rss_entities_and_missing_dates():
    posts = feed("rss_entities.xml")
    assert all(isinstance(p, Post) for p in posts) and len(posts) == 3
    first, second, third = posts
    assert first.text.startswith("Nordvik Energi varslar 200 & facket är “djupt oroat”\n\n")
    assert '"Stämningen är tung", säger en anställd – många har jobbat där i över 20 år.' in first.text
    assert first.created_at == datetime(2026, 5, 5, 6, 15, tzinfo=UTC)
    assert (first.author, first.lang_hint, first.source) == ("Karin Ek", "sv-SE", "rss")
    assert second.created_at is None  # no pubDate: classify falls back to fetched_at
    assert "track()" not in second.text and "Ansök senast 31 maj — intervjuerna" in second.text
    assert "återkoppling" in third.text and third.url.endswith("fjallhem-arets-arbetsgivare")


def test_atom_declared_latin1_is_decoded():
    posts = feed("atom_latin1.xml")
    assert [p.text.split("\n")[0] for p in posts] == [
        "Fjällhem: så mår personalen efter flytten", "Lönesamtal på Kvarnby Bank – medlemmarna missnöjda"]
    assert "«Vi får inget veta»" in posts[0].text
    assert posts[0].author == "Åsa Öberg"
    assert posts[0].created_at == datetime(2026, 5, 5, 6, 30, tzinfo=UTC)
    assert posts[1].created_at is None


def test_rss_declared_windows1252_is_decoded():
    (post,) = feed("rss_windows1252.xml")
    assert post.text.startswith("”Vi är för få” – sjuksköterskor om bemanningen")
    assert "950 € per år …" in post.text


def test_entry_ids_are_stable_and_scoped_to_the_feed():
    a = [p.id for p in feed("rss_entities.xml")]
    assert a == [p.id for p in feed("rss_entities.xml")]
    assert len(set(a)) == 3 and all(i.startswith("rss:") for i in a)
    other = [p.id for p in feed("rss_entities.xml", url="https://mirror.example/x.xml")]
    assert not set(a) & set(other)
    assert entry_id("u", {"link": "https://x/1"}) == entry_id("u", {"link": "https://x/1", "title": "t"})
    assert entry_id("u", {}) is None


def test_not_a_feed_is_a_source_error():
    from lyssna.ingest.connectors.base import SourceError

    with pytest.raises(SourceError, match="not an RSS or Atom feed"):
        parse_feed(b"<html><body>502 Bad Gateway</body>", feed_url="https://x/feed")


# ------------------------------------------------------------------ mastodon

def statuses() -> list[dict]:
    return json.loads((FEEDS / "mastodon_statuses.json").read_text(encoding="utf-8"))


def test_status_html_becomes_text_with_mentions_and_tags():
    s = statuses()[0]
    p = status_to_post(s, instance="https://social.example.se")
    assert p.text == ("Tredje omorganisationen på ett år hos @nordvikenergi. Ingen vet vem som är chef "
                      "längre & folk slutar i drivor. #arbetsmiljö")
    assert p.id == "mastodon:https://social.example.se/users/lena/statuses/113200000000000005"
    assert (p.author, p.lang_hint, p.source) == ("lena", "sv", "mastodon")
    assert p.created_at == datetime(2026, 5, 5, 9, 12, 44, tzinfo=UTC)
    assert p.metadata["tags"] == ["arbetsmiljö"]


def test_status_spoiler_reblog_and_media_only():
    spoiler, media_only, boost = statuses()[1], statuses()[2], statuses()[3]
    p = status_to_post(spoiler, instance="https://social.example.se")
    assert p.text == 'jobbstress\n\nFjärde veckan i rad med övertid på Kvarnby Bank.\nLedningen säger att det är "tillfälligt".'
    assert status_to_post(media_only, instance="https://social.example.se") is None
    b = status_to_post(boost, instance="https://social.example.se")
    assert b.id == "mastodon:https://acme.example.com/users/acmerobotics/statuses/777"
    assert b.author == "acmerobotics@acme.example.com" and b.metadata["boosted_by"] == "anna"
    assert b.text.startswith("We're hiring! Join #AcmeRobotics in Malmö")


def test_malformed_status_is_a_rejection_with_its_payload():
    s = copy.deepcopy(statuses()[0])
    del s["uri"], s["id"]
    r = status_to_post(s, instance="https://social.example.se")
    assert isinstance(r, Rejection) and "malformed" in r.reason and "nordvikenergi" in r.payload


def test_mastodon_ids_order_numerically():
    assert id_order("99") < id_order("100") < id_order("101")
    assert max(["9", "10", "113200000000000001"], key=id_order) == "113200000000000001"


# ------------------------------------------------------------------ bluesky

def events() -> list[dict]:
    lines = (FEEDS / "jetstream_events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_only_created_posts_with_text_become_posts():
    out = [event_to_post(e) for e in events()]
    posts = [p for p in out if p is not None]
    assert [p.id for p in posts] == [
        "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3lomd2yxkwc2k",
        "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3lomd30aaaa2k",
        "at://did:plc:4d3ftdwmzxsyv2fhlbbeckkm/app.bsky.feed.post/3lomd30bbbb2k",
    ]  # identity, account, like, delete and the image-only post are skipped
    reply = posts[1]
    assert reply.metadata["reply"] is True and reply.lang_hint == "en"
    assert reply.url == "https://bsky.app/profile/did:plc:ewvi7nxzyoun6zhxrhs64oiz/post/3lomd30aaaa2k"
    assert posts[2].lang_hint == "de"
    assert posts[0].created_at == datetime(2026, 5, 5, 9, 30, 0, 123000, tzinfo=UTC)


def test_malformed_commit_is_a_rejection():
    e = copy.deepcopy(events()[0])
    del e["commit"]["rkey"]
    assert isinstance(event_to_post(e), Rejection)
    assert event_to_post("not an object") is None


def test_subscribe_url_sets_filter_and_cursor():
    assert subscribe_url("wss://js.example/subscribe", None) == \
        "wss://js.example/subscribe?wantedCollections=app.bsky.feed.post"
    assert subscribe_url("wss://js.example/subscribe?compress=false&cursor=1", "1746435000000640") == \
        "wss://js.example/subscribe?compress=false&wantedCollections=app.bsky.feed.post&cursor=1746435000000640"


# ------------------------------------------------------------------ shared

def test_backoff_grows_to_the_cap_and_honours_retry_after():
    mid = lambda: 0.5  # noqa: E731 - no jitter
    assert [backoff_delay(n, 2.0, 30.0, rand=mid) for n in range(0, 7)] == [0, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(1, 2.0, 30.0, retry_after=120, rand=mid) == 120
    assert backoff_delay(1, 300.0, 3600.0, rand=mid) == 300  # an RSS feed: first retry after its interval
    lo, hi = backoff_delay(3, 1.0, 60, rand=lambda: 0.0), backoff_delay(3, 1.0, 60, rand=lambda: 1.0)
    assert (lo, hi) == (pytest.approx(3.2), pytest.approx(4.8))
    assert backoff_delay(10_000, 1.0, 60.0, rand=mid) == 60


def test_connector_names_and_text_clipping():
    class Src:
        type, name = "rss", None
    assert connector_name(Src(), 2) == "rss:2"
    Src.name = "hr-news"
    assert connector_name(Src(), 2) == "hr-news"
    assert clip_text("abc", 10) == "abc"
    assert clip_text("x" * 20, 10) == "x" * 9 + "…"
