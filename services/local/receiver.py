"""A real local webhook receiver for tests, end-to-end runs and ``make run``.

It listens on loopback, records every request (headers, body, when), checks
the Standard Webhooks signature with the independent ``standardwebhooks``
reference library, and answers as told: 200 by default, a scripted sequence
(503 with ``Retry-After``, 429, 410...), held open (to kill a sender
mid-request), or not at all (down: connection refused).

    from lyssna.local.receiver import WebhookReceiver, Reply

    with WebhookReceiver(secrets="whsec_...") as rx:
        rx.script(Reply(503, {"Retry-After": "1"}))   # the first request gets 503, then 200s
        ... point a webhook at rx.url ...
        rx.wait_for(lambda r: len(r.ok) >= 1, timeout=60)
        assert all(q.verified for q in rx.requests)

From the command line it prints one line per verified alert:

    python -m lyssna.local.receiver --port 9000 --secret-env LYSSNA_WEBHOOK_SECRET
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok":true}'


@dataclass
class Received:
    path: str
    headers: dict[str, str]          # lower-case names
    body: bytes
    received_at: float
    verified: bool | None            # None: the receiver has no secret to check with
    verify_error: str | None = None
    answered: int | None = None      # status sent back; None while held or if the sender went away

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, secrets: str | Sequence[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, path: str = "/hook", hold_timeout: float = 120.0,
                 on_request: Callable[[Received], None] | None = None):
        if isinstance(secrets, str):
            secrets = [s.strip() for s in secrets.split(",") if s.strip()]
        self._verifiers = [Webhook(s) for s in (secrets or [])]
        self.host, self.port, self.path = host, port, path
        self.hold_timeout = hold_timeout
        self.on_request = on_request
        self._lock = threading.Condition()
        self._requests: list[Received] = []
        self._script: list[Reply] = []
        self._default = Reply()
        self._released = threading.Event()
        self._released.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set = set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "WebhookReceiver":
        if self._server is not None:
            return self
        handler = _make_handler(self)
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]  # keep the port: up() after down() reuses it
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"webhook-receiver:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            # Closing the listening socket leaves keep-alive connections served by
            # their handler threads: a "down" receiver would still take requests.
            with self._lock:
                conns, self._connections = set(self._connections), set()
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(timeout=10)

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    down = stop   # nothing listens: senders get "connection refused"
    up = start

    @property
    def is_up(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    # ------------------------------------------------------------ behaviour

    def respond(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """The answer once the script is used up."""
        with self._lock:
            self._default = Reply(status, dict(headers or {}))

    def script(self, *replies: Reply) -> None:
        """Answers for the next requests, in order; then the default."""
        with self._lock:
            self._script.extend(replies)

    def hold(self) -> None:
        """Record requests but do not answer until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    # ------------------------------------------------------------ what came in

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    @property
    def ok(self) -> list[Received]:
        """Requests answered with a 2xx."""
        return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]

    def by_webhook_id(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for r in self.requests:
            out.setdefault(r.webhook_id or "", []).append(r)
        return out

    def wait_for(self, predicate: Callable[["WebhookReceiver"], bool], timeout: float = 60.0) -> bool:
        """Block until ``predicate(self)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(timeout=min(left, 0.5))
        return True

    # ------------------------------------------------------------ internals

    def _verify(self, headers: dict[str, str], body: bytes) -> tuple[bool | None, str | None]:
        if not self._verifiers:
            return None, None
        error = None
        for v in self._verifiers:
            try:
                v.verify(body, headers, json_parse=False)
                return True, None
            except (WebhookVerificationError, ValueError) as e:
                error = str(e) or type(e).__name__
        return False, error

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> tuple[Received, Reply]:
        verified, error = self._verify(headers, body)
        rec = Received(path, headers, body, time.time(), verified, error)
        with self._lock:
            self._requests.append(rec)
            reply = self._script.pop(0) if self._script else self._default
            self._lock.notify_all()
        return rec, reply

    def _answered(self, rec: Received, status: int) -> None:
        with self._lock:
            rec.answered = status
            self._lock.notify_all()
        if self.on_request is not None:
            self.on_request(rec)


def _make_handler(rx: WebhookReceiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with rx._lock:
                rx._connections.add(self.connection)

        def finish(self) -> None:
            with rx._lock:
                rx._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def log_message(self, *args) -> None:  # quiet: tests read rx.requests instead
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec, reply = rx._record(self.path, headers, body)
            if not rx._released.wait(timeout=rx.hold_timeout):
                return
            try:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
            except OSError:
                return  # the sender went away (killed mid-request)
            rx._answered(rec, reply.status)

        def do_GET(self) -> None:
            body = json.dumps({"received": len(rx.requests)}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _summary(rec: Received) -> str:
    try:
        doc = rec.json
    except ValueError:
        return rec.body[:200].decode("utf-8", "replace")
    if isinstance(doc, dict):
        if "type" in doc and "rule" in doc:  # Lyssna's own json format
            return (f"{doc['type']} rule={doc['rule']} org={doc.get('organization')} "
                    f"count={doc.get('count')} alert={doc.get('alert_id')}")
        if "alerts" in doc:  # alertmanager
            a = doc["alerts"][0] if doc["alerts"] else {}
            return f"alertmanager {doc.get('status')} {a.get('labels', {})}"
        if "text" in doc:  # slack
            return f"slack {doc['text'][:160]}"
        if "attachments" in doc:  # teams
            return "teams adaptive card"
    return json.dumps(doc)[:200]


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Receive Lyssna webhooks and print each verified alert.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--path", default="/hook")
    ap.add_argument("--secret-env", default="LYSSNA_WEBHOOK_SECRET",
                    help="environment variable with the whsec_ secret(s); unset: signatures are not checked")
    args = ap.parse_args(list(argv) if argv is not None else None)
    secrets = os.environ.get(args.secret_env)

    def show(rec: Received) -> None:
        mark = {True: "verified", False: f"BAD SIGNATURE ({rec.verify_error})", None: "unsigned"}[rec.verified]
        stamp = time.strftime("%H:%M:%S", time.localtime(rec.received_at))
        print(f"{stamp} {mark} webhook-id={rec.webhook_id} {_summary(rec)}", flush=True)

    rx = WebhookReceiver(secrets, host=args.host, port=args.port, path=args.path, on_request=show)
    rx.start()
    print(f"listening on {rx.url} ({'checking signatures' if secrets else 'no secret: not checking'})",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        rx.stop()


if __name__ == "__main__":
    main()
