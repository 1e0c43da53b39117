"""RSS and Atom feeds, polled politely.

Each poll is a conditional GET (``If-None-Match`` / ``If-Modified-Since`` from
the previous answer), so an unchanged feed costs the publisher a 304. The
validators are the cursor: they are stored only after the poll's posts are in
Kafka, so a restart re-asks exactly what was not yet safely ingested. Entries
are keyed by feed URL + guid (or link), and dedup absorbs entries a changed
feed still lists. feedparser reads the bytes, so the declared encoding
(ISO-8859-1, windows-1252 ...) is honoured; it runs in a worker thread, so a
large or slow-to-parse feed does not stall the event loop (the API, the other
connectors). The GET itself is fetch.safe_get: addresses and redirects checked,
the body capped while it streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone, tzinfo
from typing import Any, AsyncIterator

import feedparser
import httpx

from lyssna.common.config import RssSource
from lyssna.common.contracts import Post

from ..html_text import html_to_text
from ..normalize import Rejection
from .base import USER_AGENT, Batch, SourceError, clip_text, prepared, register
from .feed_dates import parse_feed_date, to_utc
from .fetch import FetchPolicy, PolledHttpConnector, safe_get

_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
_RETRYABLE = {429, 500, 502, 503, 504}


_DATE_KEYS = ("published", "updated", "created")


def _when(entry: Any, zone: tzinfo = timezone.utc) -> datetime | None:
    """The entry's first date that is a real instant. The raw strings are read by
    feed_dates, not feedparser's ``*_parsed`` (which rolls 25:14 over into the next
    day, fills missing parts from today and drops PM)."""
    for key in _DATE_KEYS:
        dt = to_utc(parse_feed_date(dict.get(entry, key)), zone)
        if dt is not None:
            return dt
    return None


def feed_zone(feed: Any) -> tzinfo:
    """The zone of the feed's own dates: a feed that writes an entry's time without
    a zone (``Sat, Dec 16 2023 02:02:33 PM``) means its local time, which its
    channel date usually states. UTC when the feed says nothing."""
    for key in _DATE_KEYS:
        dt = parse_feed_date(dict.get(feed, key))
        if dt is not None and dt.tzinfo is not None:
            return dt.tzinfo
    return timezone.utc


def _body_html(entry: Any) -> str | None:
    """The first content with a value, else the summary: an Atom ``<content src=...>``
    has no inline value and must not hide the entry's ``<summary>``."""
    for c in entry.get("content") or []:
        if (c.get("value") or "").strip():
            return c.get("value")
    return entry.get("summary")


def _lang(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value if 2 <= len(value) <= 16 and value.replace("-", "").replace("_", "").isalnum() else None


def entry_id(feed_url: str, entry: Any) -> str | None:
    key = entry.get("id") or entry.get("link")
    if not key:
        body = (entry.get("title") or "") + "\x1f" + (entry.get("summary") or "")
        if not body.strip("\x1f"):
            return None
        key = "content:" + body
    # guids are only unique within their feed ("1", "2" ... is common).
    return "rss:" + hashlib.sha256(f"{feed_url}\x1f{key}".encode()).hexdigest()[:32]


def entry_to_post(entry: Any, *, feed_url: str, feed_lang: str | None = None,
                  fetched_at: datetime | None = None,
                  zone: tzinfo = timezone.utc) -> Post | Rejection | None:
    """One feedparser entry as a Post; None for an entry without any text."""
    title = html_to_text(entry.get("title"))
    content = entry.get("content") or []
    body = html_to_text(_body_html(entry))
    if body.startswith(title) and title:
        title = ""  # some feeds repeat the title as the first line of the summary
    text = "\n\n".join(p for p in (title, body) if p)
    post_id = entry_id(feed_url, entry)
    if not text or post_id is None:
        return None
    link = entry.get("link")
    if link and not link.lower().startswith(("http://", "https://")):
        link = None
    author = entry.get("author")
    fields: dict[str, Any] = dict(
        id=post_id, source="rss", url=link[:2048] if link else None,
        author=author[:512] if author else None, text=clip_text(text), created_at=_when(entry, zone),
        lang_hint=_lang((content[0].get("language") if content else None) or feed_lang),
        metadata={"feed": feed_url, **({"guid": entry["id"][:512]} if entry.get("id") else {})},
    )
    if fetched_at is not None:
        fields["fetched_at"] = fetched_at
    try:
        return Post(**fields)
    except ValueError as e:
        return Rejection(f"feed {feed_url} entry {post_id}: {e}",
                         payload=json.dumps({k: entry.get(k) for k in ("id", "link", "title")}, default=str))


def parse_feed(content: bytes, *, feed_url: str, content_type: str | None = None,
               fetched_at: datetime | None = None) -> list[Post | Rejection]:
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(content, response_headers=headers)
    if parsed.bozo and not parsed.entries and not parsed.feed.get("title"):
        raise SourceError(f"{feed_url} is not an RSS or Atom feed: {parsed.get('bozo_exception')}")
    feed_lang = parsed.feed.get("language")
    zone = feed_zone(parsed.feed)
    out = []
    for entry in parsed.entries:
        item = entry_to_post(entry, feed_url=feed_url, feed_lang=feed_lang, fetched_at=fetched_at, zone=zone)
        if item is not None:
            out.append(item)
    return out


def _retry_after(resp: Any) -> float | None:
    v = resp.headers.get("retry-after", "")
    return float(v) if v.strip().isdigit() else None


@register
class RssConnector(PolledHttpConnector):
    type = "rss"
    source_model = RssSource

    def __init__(self, source: RssSource, name: str, *, client: httpx.AsyncClient | None = None,
                 timeout_s: float = 30.0, policy: FetchPolicy | None = None):
        super().__init__(name, source.url)
        self.url = source.url
        self.policy = policy or FetchPolicy(allow_private_network=source.allow_private_network)
        self.interval_s = source.interval.total_seconds()
        # Polite: an erroring feed is retried no sooner than its interval, then less often.
        self.retry_base_s = self.interval_s
        self.retry_cap_s = max(self.interval_s, 3600.0)
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                                   headers={"User-Agent": USER_AGENT})
        self._own_client = client is None

    async def fetch(self, validators: dict[str, str]) -> tuple[list[Post | Rejection], dict[str, str] | None]:
        """One conditional GET: (posts, new validators) or ([], None) when unchanged."""
        headers = {"Accept": _ACCEPT}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("modified"):
            headers["If-Modified-Since"] = validators["modified"]
        resp = await safe_get(self._client, self.url, self.policy, headers=headers)
        if resp.status == 304:
            return [], None
        if resp.status != 200:
            raise SourceError(f"GET {self.url}: HTTP {resp.status}",
                              retry_after=_retry_after(resp) if resp.status in _RETRYABLE else None)
        posts = await asyncio.to_thread(parse_feed, resp.body, feed_url=self.url,
                                        content_type=resp.headers.get("content-type"))
        new = {k: v for k, v in (("etag", resp.headers.get("etag")),
                                 ("modified", resp.headers.get("last-modified"))) if v}
        return posts, new

    async def batches(self, cursor: str | None) -> AsyncIterator[Batch]:
        validators: dict[str, str] = json.loads(cursor) if cursor else {}
        while True:
            posts, new = await self.fetch(validators)
            if new is not None:
                validators = new
            yield Batch(prepared(posts), json.dumps(validators, sort_keys=True))
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
