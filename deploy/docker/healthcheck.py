#!/usr/bin/env python3
"""Container healthcheck: exit 0 if the URL answers 2xx, else 1 with the reason.

Without a URL (the image's own HEALTHCHECK, which serves all three services) it
asks /readyz of the Lyssna service that listens in this container: one image
runs ingest, classify or alerts, each on its port (LYSSNA_<SERVICE>_PORT, or
8081/8082/8083), and the ports of the other two refuse the connection.

The slim image has no curl; this uses only the standard library. /readyz names
the dependency that is down, which `docker compose ps` / `docker inspect` show.
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"ingest": 8081, "classify": 8082, "alerts": 8083}


def check(url: str) -> bool | None:
    """True on 2xx, False on any other answer, None when nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 200 <= resp.status < 300
    except urllib.error.HTTPError as e:
        print(f"{url}: {e.code} {e.read(500).decode('utf-8', 'replace')}", file=sys.stderr)
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return None
        print(f"{url}: {e.reason}", file=sys.stderr)
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
    return False


def local_urls() -> list[str]:
    return [f"http://127.0.0.1:{os.environ.get(f'LYSSNA_{name.upper()}_PORT') or port}/readyz"
            for name, port in DEFAULT_PORTS.items()]


def main() -> int:
    urls = sys.argv[1:2] or local_urls()
    for url in urls:
        result = check(url)
        if result is not None:
            return 0 if result else 1
    print(f"nothing listens at {', '.join(urls)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
