"""Outbound safety: a webhook (or a feed, or a redirect a feed answers with)
must not become a way into the private network.

Whoever can create a webhook (config or API) could otherwise make the alerts
service POST to 127.0.0.1, the cloud metadata address (169.254.169.254) or
any internal host. A URL is refused when *any* address its host resolves to is
not a public unicast address, unless the webhook says
``allow_private_network: true`` (for receivers on the same host or LAN).

Checking every resolved address matters: a name with one public and one
private record would otherwise pass the check and connect to the private one.
The check returns the addresses it approved and :func:`pinned_request` turns
one of them into the request to send: connect to that address, speak to the
URL's host (Host header, TLS server name and certificate check). The name is
never resolved a second time, so DNS rebinding between check and use has no
window.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable
from urllib.parse import urlsplit

import httpx

ALLOWED_SCHEMES = ("http", "https")
FIX = "set 'allow_private_network: true' on this webhook if the receiver is meant to be on a private network"

Resolver = Callable[..., list]
# Why an address must not be called, or None when it may. The default refuses
# every non-public address; tests swap it to approve one loopback address as if
# it were public, so no test ever needs a real public address.
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], "str | None"]


class UnsafeWebhookURL(ValueError):
    """A webhook URL that must not be called; the message names the host, the
    address and the fix."""


class WebhookURLResolutionError(OSError):
    """The host did not resolve now; this may pass, so delivery retries."""


def why_not_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address):
        # An IPv6 form that only wraps an IPv4 address is judged by that address.
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            why = why_not_public(embedded)
            return f"{why} (embedded in {addr})" if why else None
    for attr, label in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                        ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                        ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(addr, attr):
            return label
    if not addr.is_global:  # e.g. 100.64.0.0/10, carrier-grade NAT
        return "not globally routable"
    return None


def _resolve(host: str, port: int, resolver: Resolver, subject: str = "webhook URL") -> list[str]:
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise WebhookURLResolutionError(f"{subject} host {host!r} does not resolve: {e}") from None
    # sockaddr[0] of an IPv6 link-local address may carry a %scope suffix.
    addrs = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addrs:
        raise WebhookURLResolutionError(f"{subject} host {host!r} resolved to no address")
    return addrs


def check_webhook_url(url: str, allow_private_network: bool = False,
                      resolver: Resolver = socket.getaddrinfo,
                      address_policy: AddressPolicy = why_not_public, *, subject: str = "webhook URL",
                      refusing: str = "send alerts there", fix: str = FIX) -> list[str]:
    """Refuse ``url`` unless it is http(s) to a host whose every address is public.

    ``subject``, ``refusing`` and ``fix`` word the errors for other callers (feeds).

    Returns the resolved addresses (empty when ``allow_private_network`` skips
    resolution). Raises :class:`UnsafeWebhookURL` for a URL that can never be
    used and :class:`WebhookURLResolutionError` when the name does not resolve
    (which may be temporary). The default resolver blocks: from async code
    call it through ``asyncio.to_thread``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeWebhookURL(f"{subject} {url!r} is malformed: {e}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeWebhookURL(f"{subject} scheme {parts.scheme or '(none)'!r} is not allowed; "
                               f"use http:// or https://")
    host = parts.hostname
    if not host:
        raise UnsafeWebhookURL(f"{subject} {url!r} has no host")
    if allow_private_network:
        return []
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    addrs = _resolve(host, port, resolver, subject)
    for a in addrs:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            raise UnsafeWebhookURL(f"{subject} host {host!r} resolved to {a!r}, "
                                   f"which is not an IP address") from None
        why = address_policy(addr)
        if why:
            raise UnsafeWebhookURL(
                f"{subject} host {host!r} resolves to {a}, a {why} address; refusing to "
                f"{refusing}. Fix: {fix}")
    return addrs


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """``(url, headers, extensions)`` for an httpx request to ``url`` that connects to
    ``address`` (one :func:`check_webhook_url` approved): the URL with the address as
    its host, the original ``Host`` header and, for https, the original host as the
    TLS server name, so SNI and the certificate check are unchanged."""
    original = httpx.URL(url)
    target = original.copy_with(host=address)
    headers = {"host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": original.raw_host.decode("ascii")} if original.scheme == "https" else {}
    return str(target), headers, extensions
