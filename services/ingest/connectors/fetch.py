"""One GET for the pull connectors, safe against what a source answers.

- Every hop's address is checked like a webhook's (``lyssna.common.urlsafety``):
  a feed, or a redirect it answers with, must not lead into the private network
  (127.0.0.1, 169.254.169.254, the LAN) unless the source says
  ``allow_private_network: true``. The connection goes to the address the check
  approved, so DNS rebinding between check and use has no window.
- Redirects are followed by hand, each hop checked, at most ``MAX_REDIRECTS``.
- The body is counted while it streams (after content decoding, so a gzip bomb
  counts at its real size) and refused past ``max_bytes``: a hostile or broken
  source cannot make the ingest process hold more than that per response.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, Mapping

import httpx

from lyssna.common.urlsafety import (AddressPolicy, UnsafeWebhookURL, WebhookURLResolutionError,
                                     check_webhook_url, pinned_request, why_not_public)

from .base import Connector, SourceError

MAX_REDIRECTS = 5
#: The default of ``ingest.max_feed_bytes``.
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_SECONDS = 60.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_FIX = "set 'allow_private_network: true' on this source if it is meant to be on a private network"


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes
    links: dict[Any, Any]       # the parsed Link header (Mastodon pagination)


@dataclass(frozen=True)
class FetchPolicy:
    """What a connector may fetch; one per source."""

    max_bytes: int = DEFAULT_MAX_BYTES
    # The whole fetch, redirects and body included: httpx's timeout is per read,
    # so a server that trickles a byte now and then would otherwise hold the
    # connector for as long as it likes.
    max_seconds: float = DEFAULT_MAX_SECONDS
    allow_private_network: bool = False
    resolver: Any = socket.getaddrinfo
    address_policy: AddressPolicy = why_not_public

    @classmethod
    def for_source(cls, source: Any, settings: Any) -> "FetchPolicy":
        """The policy of one configured HTTP source (rss, mastodon)."""
        return cls(max_bytes=settings.ingest.max_feed_bytes, allow_private_network=source.allow_private_network)


class PolledHttpConnector(Connector):
    """A connector that polls an HTTP source through :func:`safe_get`; built with
    the source's fetch policy and the service's shared HTTP client."""

    @classmethod
    def from_source(cls, source: Any, name: str, settings: Any, *,
                    http: httpx.AsyncClient | None = None) -> "PolledHttpConnector":
        return cls(source, name, client=http, policy=FetchPolicy.for_source(source, settings))


async def _route(url: str, policy: FetchPolicy) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Where to connect for ``url``: (request URL, extra headers, extensions)."""
    try:
        addrs = await asyncio.to_thread(
            check_webhook_url, url, policy.allow_private_network, policy.resolver, policy.address_policy,
            subject="source URL", refusing="fetch from it", fix=_FIX)
    except (UnsafeWebhookURL, WebhookURLResolutionError) as e:
        raise SourceError(str(e)) from None
    if not addrs:  # private networks allowed: no resolution was needed
        return url, {}, {}
    return pinned_request(url, addrs[0])


async def _read_capped(resp: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise SourceError(f"GET {url}: answer of {declared} bytes is over the limit of {max_bytes} "
                          f"(ingest.max_feed_bytes)")
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise SourceError(f"GET {url}: answer is over the limit of {max_bytes} bytes (ingest.max_feed_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def safe_get(client: httpx.AsyncClient, url: str, policy: FetchPolicy, *,
                   headers: Mapping[str, str] | None = None,
                   params: Mapping[str, str] | None = None) -> Fetched:
    """GET ``url`` under ``policy``; any answer but a redirect is returned (the
    caller judges the status). Network errors, refused addresses, too many
    redirects, oversized bodies and fetches over ``policy.max_seconds`` are
    ``SourceError``."""
    try:
        async with asyncio.timeout(policy.max_seconds):
            return await _follow(client, url, policy, headers, params)
    except TimeoutError:
        raise SourceError(f"GET {url}: no complete answer within {policy.max_seconds:g} s") from None


async def _follow(client: httpx.AsyncClient, url: str, policy: FetchPolicy,
                  headers: Mapping[str, str] | None, params: Mapping[str, str] | None) -> Fetched:
    current = httpx.URL(url, params=params) if params else httpx.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        target, extra, extensions = await _route(str(current), policy)
        try:
            async with client.stream("GET", target, headers={**(headers or {}), **extra},
                                     extensions=extensions, follow_redirects=False) as resp:
                location = resp.headers.get("location")
                if resp.status_code in _REDIRECTS and location:
                    current = current.join(location)
                    continue
                body = await _read_capped(resp, url, policy.max_bytes)
                return Fetched(resp.status_code, resp.headers, body, resp.links)
        except httpx.HTTPError as e:
            raise SourceError(f"GET {url}: {type(e).__name__}: {e}") from e
        except httpx.InvalidURL as e:
            raise SourceError(f"GET {url}: redirected to an invalid URL: {e}") from e
    raise SourceError(f"GET {url}: more than {MAX_REDIRECTS} redirects")
