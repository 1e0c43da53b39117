#!/usr/bin/env python3
"""Container healthcheck: exit 0 if the URL answers 2xx, else 1 with the reason.

The slim image has no curl; this uses only the standard library. /readyz names
the dependency that is down, which `docker compose ps` / `docker inspect` show.
"""

import sys
import urllib.error
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8081/readyz"
try:
    with urllib.request.urlopen(url, timeout=4) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except urllib.error.HTTPError as e:
    print(f"{url}: {e.code} {e.read(500).decode('utf-8', 'replace')}", file=sys.stderr)
except OSError as e:
    print(f"{url}: {e}", file=sys.stderr)
sys.exit(1)
