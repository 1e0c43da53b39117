"""Tests may talk to loopback only: a guard that refuses every other connection.

An audit hook (PEP 578) sees every ``socket.connect`` and ``socket.sendto`` made
by Python code, asyncio and the client libraries included. A connection to an
address outside 127.0.0.0/8 or ::1 (a public address, a private range, a host
name other than localhost) is refused with ``PermissionError`` and written to
the file named by ``LYSSNA_TEST_NET_LOG``; the test harness fails the test that
caused it. Processes the tests start (the e2e stack) get the same guard through
``sitecustomize`` on ``PYTHONPATH`` and report to the same file.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import traceback

ENV_LOG = "LYSSNA_TEST_NET_LOG"
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_installed = False


def is_loopback(host: object) -> bool:
    """Whether a socket address's host is on this machine's loopback."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.split("%", 1)[0]  # IPv6 scope id
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name we would have to resolve: not provably local
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def allowed(address: object) -> bool:
    """AF_UNIX paths and loopback (host, port, ...) tuples are allowed."""
    if isinstance(address, (str, bytes)):
        return True  # a Unix socket path
    if isinstance(address, tuple) and address:
        return is_loopback(address[0])
    return False


def _record(event: str, address: object) -> None:
    caller = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in traceback.extract_stack(limit=8)[-3::-1])
    path = os.environ.get(ENV_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} to {address!r} (pid {os.getpid()}) at {caller}\n")
    print(f"[loopback guard] refused {event} to {address!r}", file=sys.stderr)


def _hook(event: str, args: tuple) -> None:
    if event in ("socket.connect", "socket.sendto") and len(args) >= 2:
        address = args[-1]
        if not allowed(address):
            _record(event, address)
            raise PermissionError(f"tests may connect to loopback addresses only; refused {address!r}")


def install() -> None:
    """Install the guard in this process (once; audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def violations(path: str | None = None) -> list[str]:
    path = path or os.environ.get(ENV_LOG)
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()
