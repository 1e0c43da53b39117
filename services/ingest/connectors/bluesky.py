"""Bluesky through Jetstream: the firehose as JSON over a websocket, asked for
``app.bsky.feed.post`` records only.

The cursor is the ``time_us`` of the last event handled (of any kind: a run of
deletes or likes still moves it). On reconnect Jetstream replays from that
cursor; the event at exactly that time comes again and dedup absorbs it.
Events are gathered into batches (by count or a short time) so Kafka sees
batches, not single records.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets

from lyssna.common.config import BlueskySource
from lyssna.common.contracts import Post

from ..normalize import Rejection
from .base import USER_AGENT, Batch, Connector, SourceError, clip_text, malformed, prepared, register, source_time

POST_COLLECTION = "app.bsky.feed.post"
#: Largest frame accepted; a bigger one closes the connection (the runner then
#: reconnects from the cursor). A Jetstream event is a few kB; the limit only
#: bounds what a broken or hostile endpoint can make the process buffer
#: (times the websocket's receive queue of 16 frames).
MAX_MESSAGE_BYTES = 1024 * 1024
#: Frames at least this large are parsed in a worker thread, off the event loop;
#: the usual few-kB event is not worth the hop.
THREAD_PARSE_BYTES = 64 * 1024


def subscribe_url(base: str, cursor: str | None) -> str:
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("wantedCollections", "cursor")]
    query.append(("wantedCollections", POST_COLLECTION))
    if cursor:
        query.append(("cursor", cursor))
    return urlunsplit(parts._replace(query=urlencode(query)))


def event_to_post(event: Any) -> Post | Rejection | None:
    """A Jetstream event as a Post; None for anything but a newly created post."""
    if not isinstance(event, dict) or event.get("kind") != "commit":
        return None
    commit = event.get("commit")
    if not isinstance(commit, dict) or commit.get("collection") != POST_COLLECTION \
            or commit.get("operation") != "create":
        return None
    try:
        did, rkey = event["did"], commit["rkey"]
        record = commit.get("record") or {}
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            return None  # image-only posts carry no text to classify
        langs = record.get("langs") or []
        lang = langs[0] if langs and isinstance(langs[0], str) and len(langs[0]) <= 16 else None
        return Post(
            id=f"at://{did}/{POST_COLLECTION}/{rkey}", source="bluesky",
            url=f"https://bsky.app/profile/{did}/post/{rkey}", author=did,
            text=clip_text(text), created_at=source_time(record.get("createdAt")), lang_hint=lang,
            metadata={"cid": commit.get("cid"), "reply": "reply" in record,
                      "time_us": event.get("time_us")},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        return malformed("jetstream commit", e, event)


@register
class BlueskyConnector(Connector):
    type = "bluesky"
    source_model = BlueskySource

    def __init__(self, source: BlueskySource, name: str, *, max_batch: int = 500,
                 max_wait_s: float = 0.5, open_timeout_s: float = 15.0):
        super().__init__(name, source.url)
        self.url = source.url
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.open_timeout_s = open_timeout_s
        self.retry_base_s = 1.0
        self.retry_cap_s = 120.0

    async def batches(self, cursor: str | None) -> AsyncIterator[Batch]:
        url = subscribe_url(self.url, cursor)
        try:
            ws = await websockets.connect(url, open_timeout=self.open_timeout_s,
                                          user_agent_header=USER_AGENT, max_size=MAX_MESSAGE_BYTES,
                                          ping_interval=20, ping_timeout=20)
        except (OSError, websockets.WebSocketException, TimeoutError) as e:
            raise SourceError(f"cannot connect to {self.url}: {type(e).__name__}: {e}") from e
        items: list[Post | Rejection] = []
        last_time: str | None = None
        flushed_time = cursor
        deadline = time.monotonic() + self.max_wait_s
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    raw = None
                except websockets.ConnectionClosed as e:
                    if items or last_time != flushed_time:
                        yield Batch(prepared(items), last_time)
                    raise SourceError(f"{self.url} closed the connection: {e}") from e
                if raw is not None:
                    try:
                        event = (json.loads(raw) if len(raw) < THREAD_PARSE_BYTES
                                 else await asyncio.to_thread(json.loads, raw))
                    except (ValueError, RecursionError):
                        items.append(Rejection("jetstream sent a frame that is not JSON",
                                               payload=raw if isinstance(raw, str) else repr(raw)[:1000]))
                        continue
                    item = event_to_post(event)
                    if item is not None:
                        items.append(item)
                    if isinstance(event, dict) and isinstance(event.get("time_us"), int):
                        last_time = str(event["time_us"])
                if len(items) >= self.max_batch or time.monotonic() >= deadline:
                    if items or last_time != flushed_time:
                        yield Batch(prepared(items), last_time)
                        items, flushed_time = [], last_time
                    deadline = time.monotonic() + self.max_wait_s
        finally:
            await ws.close()
