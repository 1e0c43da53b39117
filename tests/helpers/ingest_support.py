"""Shared pieces of the ingest integration tests: reading a topic back, running
the app in-process, and local servers that speak each source's real wire format
(RSS/Atom over HTTP with validators, the Mastodon REST API with Link
pagination, a Jetstream websocket)."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from urllib.parse import parse_qs, urlsplit

import httpx

from tests.helpers.kafka_io import eventually, free_port, read_topic  # noqa: F401  (re-exported for the ingest tests)

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def pushed_id(client_id: str, source: str = "http") -> str:
    """The id a post pushed through the API with ``id`` and ``source`` gets (scoped, see normalize.py)."""
    from lyssna.ingest.normalize import client_id_prefix

    return client_id_prefix("http", source) + client_id


def topic_ids(bootstrap_servers: str, topic: str) -> list[str]:
    return [json.loads(v)["id"] for _, v in read_topic(bootstrap_servers, topic)]


async def atopic_ids(bootstrap_servers: str, topic: str) -> list[str]:
    return await asyncio.to_thread(topic_ids, bootstrap_servers, topic)


@asynccontextmanager
async def running_app(settings, **kwargs):
    """The ingest service started (without connectors unless ``run_connectors=True``),
    and an httpx client talking to its app in-process."""
    from lyssna.ingest.service import IngestService

    kwargs.setdefault("run_connectors", False)
    service = IngestService(settings, serve_http=False, **kwargs)
    await service.start()
    try:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test", timeout=60) as client:
            yield service.app, client
    finally:
        await service.stop()


# ------------------------------------------------------------------ HTTP sources

def rss(n: int) -> bytes:
    """A feed listing entries 1..n, newest first."""
    items = "".join(f"""
    <item>
      <title>Acme Robotics nyhet {k}</title>
      <link>https://news.example.se/acme/{k}</link>
      <guid isPermaLink="false">acme-entry-{k}</guid>
      <description>Personalen p&#229; Acme Robotics, del {k}.</description>
    </item>""" for k in range(n, 0, -1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Acme</title><link>https://news.example.se/acme</link>
<description>Acme</description><language>sv-SE</language>{items}
</channel></rss>""".encode()


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    client: tuple[str, int] = ("", 0)    # the requester's address and port


class _Server:
    """A ThreadingHTTPServer on a free loopback port, recording every request.

    ``handle`` returns the body as bytes (sent with Content-Length) or as an
    iterable of chunks (sent without, until the connection closes; ``sent``
    counts the bytes that went out, so a test sees where the client stopped)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Seen] = []
        self.sent = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                seen = Seen(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()},
                            client=self.client_address[:2])
                outer.requests.append(seen)
                status, headers, body = outer.handle(seen)
                seen.status = status
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                        outer.sent += len(chunk)
                except OSError:
                    pass  # the client hung up

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FeedServer(_Server):
    """Serves one feed document with ETag and Last-Modified, honouring conditional GETs."""

    def __init__(self, body: bytes, content_type: str = "application/rss+xml"):
        super().__init__()
        self.content_type = content_type
        self.fail_next = 0          # answer this many requests with 503
        self.set_body(body)

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.version = getattr(self, "version", 0) + 1
        self.etag = f'W/"feed-v{self.version}"'
        self.last_modified = formatdate(1_746_000_000 + self.version * 60, usegmt=True)

    def handle(self, seen: Seen):
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"Retry-After": "0", "Content-Type": "text/plain"}, b"maintenance"
        if seen.headers.get("if-none-match") == self.etag:
            return 304, {"ETag": self.etag}, b""
        return 200, {"Content-Type": self.content_type, "ETag": self.etag,
                     "Last-Modified": self.last_modified}, self.body


class ScriptedServer(_Server):
    """Answers each path from ``routes``: ``path -> (status, headers, body)``; 404 otherwise."""

    def __init__(self, routes: dict, host: str = "127.0.0.1"):
        super().__init__(host)
        self.routes = routes

    def handle(self, seen: Seen):
        return self.routes.get(seen.path, (404, {"Content-Type": "text/plain"}, b"not found"))


def load_statuses() -> list[dict]:
    return json.loads((FEEDS / "mastodon_statuses.json").read_text(encoding="utf-8"))


def make_status(template: dict, status_id: int, text: str) -> dict:
    s = copy.deepcopy(template)
    s["id"] = str(status_id)
    s["uri"] = f"https://social.example.se/users/lena/statuses/{status_id}"
    s["url"] = f"https://social.example.se/@lena/{status_id}"
    s["content"] = f"<p>{text}</p>"
    return s


class MastodonServer(_Server):
    """The parts of the Mastodon REST API the connector uses, paginated like Mastodon:
    newest first, ``limit``/``max_id``/``since_id``/``min_id``, and a ``Link`` header
    with ``rel="next"`` (older) and ``rel="prev"`` (newer) when the page is not empty."""

    ACCOUNT_ID = "109000000000000001"

    def __init__(self, statuses: list[dict]):
        super().__init__()
        self.statuses = list(statuses)

    @staticmethod
    def _key(status_id: str) -> tuple[int, str]:
        return (len(status_id), status_id)

    def handle(self, seen: Seen):
        if seen.path == "/api/v1/accounts/lookup":
            if seen.query.get("acct") == ["lena"]:
                return 200, {"Content-Type": "application/json"}, json.dumps(
                    {"id": self.ACCOUNT_ID, "username": "lena", "acct": "lena"}).encode()
            return 404, {"Content-Type": "application/json"}, b'{"error":"Record not found"}'
        if seen.path.startswith("/api/v1/timelines/tag/") or seen.path == f"/api/v1/accounts/{self.ACCOUNT_ID}/statuses":
            return self._page(seen)
        return 404, {"Content-Type": "application/json"}, b'{"error":"Not found"}'

    def _page(self, seen: Seen):
        q = {k: v[0] for k, v in seen.query.items()}
        limit = min(int(q.get("limit", 20)), 40)
        ordered = sorted(self.statuses, key=lambda s: self._key(s["id"]))  # oldest first
        if "max_id" in q:
            ordered = [s for s in ordered if self._key(s["id"]) < self._key(q["max_id"])]
        if "min_id" in q:
            page = [s for s in ordered if self._key(s["id"]) > self._key(q["min_id"])][:limit]
        else:
            if "since_id" in q:
                ordered = [s for s in ordered if self._key(s["id"]) > self._key(q["since_id"])]
            page = ordered[-limit:]
        page = list(reversed(page))  # the API answers newest first
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if page:
            url = f"{self.base}{seen.path}"
            headers["Link"] = (f'<{url}?limit={limit}&max_id={page[-1]["id"]}>; rel="next", '
                               f'<{url}?limit={limit}&min_id={page[0]["id"]}>; rel="prev"')
        return 200, headers, json.dumps(page).encode()


# ------------------------------------------------------------------ Jetstream

def load_jetstream_events() -> list[dict]:
    lines = (FEEDS / "jetstream_events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass
class JetstreamServer:
    """A Jetstream-like websocket: replays its events from ``cursor`` (time_us, inclusive)
    and then streams what is appended. Like the real service it always sends
    identity and account events; it does *not* apply wantedCollections, so the
    connector's own filtering is exercised too."""

    events: list[dict]
    close_after: int | None = None     # drop the connection after this many frames
    connections: list[dict[str, list[str]]] = field(default_factory=list)
    url: str = ""

    async def __aenter__(self):
        from websockets.asyncio.server import serve

        self._server = await serve(self._handler, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/subscribe"
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    def append(self, events: list[dict]) -> None:
        self.events.extend(events)

    async def _handler(self, ws) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        self.connections.append(query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        sent = 0
        i = 0
        while True:
            while i >= len(self.events):
                try:
                    await asyncio.wait_for(ws.wait_closed(), 0.05)
                    return  # the client went away
                except TimeoutError:
                    pass
            ev = self.events[i]
            i += 1
            if cursor is not None and ev["time_us"] < cursor:
                continue
            await ws.send(json.dumps(ev))
            sent += 1
            if self.close_after is not None and sent >= self.close_after:
                await ws.close()
                return


def post_event(time_us: int, rkey: str, text: str, did: str = "did:plc:testauthor0000000000000") -> dict:
    return {"did": did, "time_us": time_us, "kind": "commit",
            "commit": {"rev": f"rev{time_us}", "operation": "create", "collection": "app.bsky.feed.post",
                       "rkey": rkey, "cid": f"bafy{rkey}",
                       "record": {"$type": "app.bsky.feed.post", "createdAt": "2026-05-05T10:00:00.000Z",
                                  "langs": ["sv"], "text": text}}}
