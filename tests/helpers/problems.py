"""Checking that an error answer is the one shape every Lyssna API uses (RFC 9457)."""

from __future__ import annotations

import httpx


def problem(r: httpx.Response, status: int) -> dict:
    """The body of ``r``, checked to be an ``application/problem+json`` problem with ``status``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers["content-type"]
    body = r.json()
    assert body["type"] == "about:blank" and body["status"] == status, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str), body
    return body
