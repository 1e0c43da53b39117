"""The checks every request to an API passes before the app reads its body.

FastAPI reads and parses a body before it runs the dependencies that check the
key, so a request without a key could make the process hold a 40 MB body (and
its parsed form) just to be told 401. This ASGI middleware runs first and, in
this order, without reading a byte of the body:

1. the key: 401 for a missing or unknown key, 403 for a known key without the
   scope the route needs (``/healthz``, ``/readyz`` and ``/metrics`` are public);
2. the declared ``Content-Length`` against the service's ``max_body_bytes``: 413;
3. the concurrency cap: past ``max_concurrent_requests`` requests in flight the
   answer is 503 with ``Retry-After`` at once. Queueing would keep the excess
   connections and their bodies in memory, which is what the cap is for; every
   Lyssna client already retries a 503 after ``Retry-After``.

While the app reads, a body sent without a length (chunked) is counted: past the
limit the app is told the client went away, whatever it answers is dropped, and
the client gets 413. The app never holds more than ``max_body_bytes``.

Every refusal is an RFC 9457 problem (``lyssna.common.problems``), like the
apps' own errors. Nothing here logs or echoes a key or a body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Awaitable, MutableMapping

from .auth import KeyRing, key_id
from .config import ApiServerSettings
from .health import PUBLIC_PATHS
from .problems import PROBLEM_JSON, problem_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What the guard may answer on any other path, for the OpenAPI documents
GUARD_ERRORS = (400, 401, 403, 413, 503)
RETRY_AFTER_S = 1

# method, path -> the scope a request needs
ScopeRule = Callable[[str, str], str]


class HttpGuard:
    def __init__(self, app: ASGIApp, *, keys: KeyRing, required_scope: ScopeRule, service: str,
                 max_body_bytes: int, max_concurrent_requests: int):
        self.app, self.keys, self.required_scope, self.service = app, keys, required_scope, service
        self.max_body_bytes, self.max_concurrent = max_body_bytes, max_concurrent_requests
        self.in_flight = 0
        self.refusing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no API serves one; never let one past unchecked
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = (self._auth_refusal(scope, headers.get(b"authorization", b""))
                   or self._declared_length_refusal(headers.get(b"content-length"))
                   or self._busy_refusal())
        if refusal is not None:
            await _send(send, *refusal)
            return
        # Who made the request, for the audit log: the key's id, never the key.
        scope.setdefault("state", {})["api_key_id"] = key_id(_bearer(headers.get(b"authorization", b"")) or b"")
        self.in_flight += 1
        try:
            await _CappedBody(self.app, self.max_body_bytes).run(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _auth_refusal(self, scope: Scope, authorization: bytes) -> tuple | None:
        needed = self.required_scope(scope["method"], scope["path"])
        token = _bearer(authorization)
        held = self.keys.scopes(token) if token is not None else None
        if held is None:
            detail = ("missing or wrong API key; send 'Authorization: Bearer <key>'" if self.keys else
                      f"no API keys are configured; set LYSSNA_API_KEY (or LYSSNA_<SCOPE>_API_KEYS) "
                      f"for the {self.service} service")
            return _problem(401, detail, {b"www-authenticate": b"Bearer"})
        if needed not in held:
            return _problem(403, f"this key lacks the {needed!r} scope needed for {scope['method']} "
                                 f"{scope['path']}; use a key from LYSSNA_{needed.upper()}_API_KEYS")
        return None

    def _declared_length_refusal(self, declared: bytes | None) -> tuple | None:
        if declared is None:
            return None
        if not declared.isdigit():
            return _problem(400, "Content-Length is not a number")
        return _too_large(self.max_body_bytes) if int(declared) > self.max_body_bytes else None

    def _busy_refusal(self) -> tuple | None:
        if self.in_flight < self.max_concurrent:
            self.refusing = False
            return None
        if not self.refusing:  # once per busy spell, not once per refused request
            self.refusing = True
            log.warning("requests refused: concurrency cap reached",
                        extra={"service": self.service, "max_concurrent_requests": self.max_concurrent})
        return _problem(503, f"the {self.service} API is handling {self.max_concurrent} requests; "
                             f"retry after {RETRY_AFTER_S} s", {b"retry-after": str(RETRY_AFTER_S).encode()})


def _too_large(limit: int) -> tuple:
    return _problem(413, f"body larger than {limit} bytes; split it into smaller requests")


class _CappedBody:
    """Runs the app for one request, counting the body it reads (see the module doc)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit
        self.received = 0
        self.over = False
        self.app_started = False

    async def receive(self, receive: Receive) -> Message:
        if self.over:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.over = True  # this chunk never reaches the app
                return {"type": "http.disconnect"}
        return message

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def capped_receive() -> Message:
            return await self.receive(receive)

        async def guarded_send(message: Message) -> None:
            if self.over and not self.app_started:
                return  # the app's answer to a body it never fully got; ours is 413
            self.app_started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not (self.over and not self.app_started):
                raise
        if self.over and not self.app_started:
            await _send(send, *_too_large(self.limit))


def _bearer(authorization: bytes) -> bytes | None:
    scheme, _, token = authorization.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # The first of a repeated header counts; ASGI servers give names in lower case.
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.lower(), value)
    return out


def _problem(status: int, detail: str, headers: dict[bytes, bytes] | None = None) -> tuple:
    return status, problem_body(status, detail), headers or {}


async def _send(send: Send, status: int, body: dict, headers: dict[bytes, bytes]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()),
                            (b"content-length", str(len(payload)).encode()), *headers.items()]})
    await send({"type": "http.response.body", "body": payload})


def guard(app: Any, server: ApiServerSettings, *, keys: KeyRing, required_scope: ScopeRule, service: str) -> None:
    """Put the guard, with ``server``'s limits, in front of a Starlette/FastAPI ``app``."""
    app.add_middleware(HttpGuard, keys=keys, required_scope=required_scope, service=service,
                       max_body_bytes=server.max_body_bytes,
                       max_concurrent_requests=server.max_concurrent_requests)
