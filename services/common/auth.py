"""API keys and their scopes, shared by the HTTP services.

A key carries scopes, so a push client's key cannot silence alerts or change
rules:

- ``ingest``: ``POST /v1/posts`` on the ingest API;
- ``read``: every ``GET`` on the alerts API, and ``/openapi.json`` of both APIs;
- ``admin``: every write on the alerts API (rules, silences, webhooks,
  redeliveries); it implies ``read``.

Keys come from the environment only (see ``KEY_VARIABLES``); ``LYSSNA_API_KEY``
keys carry every scope, the single-user and development form. Checking a key
happens in :mod:`lyssna.common.http_guard`, before any body is read;
``/healthz``, ``/readyz`` and ``/metrics`` need none.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module; it needs no web framework
    from fastapi import FastAPI

FASTAPI_NO_PUBLIC_DOCS = {"docs_url": None, "redoc_url": None, "openapi_url": None}

INGEST, READ, ADMIN = "ingest", "read", "admin"
SCOPES = (INGEST, READ, ADMIN)
# What holding a scope grants besides itself: whoever may change rules may read them.
_IMPLIED = {ADMIN: frozenset({ADMIN, READ})}

# Environment variable -> the scopes its keys carry.
ALL_SCOPES_VAR = "LYSSNA_API_KEY"
KEY_VARIABLES: dict[str, frozenset[str]] = {
    ALL_SCOPES_VAR: frozenset(SCOPES),
    "LYSSNA_INGEST_API_KEYS": frozenset({INGEST}),
    "LYSSNA_READ_API_KEYS": frozenset({READ}),
    "LYSSNA_ADMIN_API_KEYS": frozenset({ADMIN}),
}

# What a bearer token may hold (RFC 6750 b64token, which token_urlsafe output fits);
# a comma separates keys, so it cannot be part of one.
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-._~+/=")


def parse_key_list(variable: str, value: str) -> list[str]:
    """The keys in one variable's comma-separated ``value``; ValueError says what is wrong
    with it without repeating the value, which is a secret."""
    keys = []
    for i, part in enumerate(value.split(","), start=1):
        key = part.strip()
        if not key:
            continue  # "a,b," or an unset-but-present variable: nothing to add
        if not set(key) <= _KEY_CHARS:
            raise ValueError(f"{variable}: key #{i} has a character other than letters, digits and -._~+/= . "
                             f"Fix: separate keys with commas only and generate keys with "
                             f"python3 -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        keys.append(key)
    return keys


def key_id(key: bytes | str) -> str:
    """A key's public name for the audit log: ``key_`` and the first 12 hex digits of its
    SHA-256, never the key. Keys are random (token_urlsafe(32)), so the hash gives
    nothing away; find which key it is with ``printf %s "$KEY" | sha256sum | cut -c1-12``."""
    raw = key.encode() if isinstance(key, str) else key
    return "key_" + hashlib.sha256(raw).hexdigest()[:12]


def expand(scopes: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for s in scopes:
        out |= _IMPLIED.get(s, {s})
    return frozenset(out)


class KeyRing:
    """Known keys and their scopes; a lookup compares with every key in constant time."""

    def __init__(self, scopes_by_key: Mapping[str, Iterable[str]]):
        self._entries = [(k.encode(), expand(v)) for k, v in scopes_by_key.items()]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def scopes(self, given: bytes) -> frozenset[str] | None:
        """The scopes of ``given``, or None for an unknown key."""
        found = None
        # Compare with every key, so the time taken says nothing about which matched.
        for key, scopes in self._entries:
            if hmac.compare_digest(given, key):
                found = scopes
        return found


def key_ring(all_scopes: Iterable[str], scoped: Mapping[str, Iterable[str]]) -> KeyRing:
    """A ring from ``LYSSNA_API_KEY``'s keys and ``{scope: keys}``; a key named for
    several scopes holds them all."""
    by_key: dict[str, set[str]] = {k: set(SCOPES) for k in all_scopes}
    for scope, keys in scoped.items():
        for k in keys:
            by_key.setdefault(k, set()).add(scope)
    return KeyRing(by_key)


def add_protected_openapi(app: FastAPI) -> None:
    """Serve the OpenAPI document at /openapi.json; the guard lets only ``read`` keys reach it
    (there is no interactive docs page, which could not send the key)."""
    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict:
        return app.openapi()
