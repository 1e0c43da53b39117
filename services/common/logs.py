"""Structured JSON logs on stderr, one object per line.

Pass ids as ``extra`` (``log.info("produced", extra={"post_id": ...})``) so they
become fields that log tools can filter on.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

_configured = False


def setup_logging(service: str, level: str | None = None) -> logging.Logger:
    global _configured
    if not _configured:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        ))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level or os.environ.get("LYSSNA_LOG_LEVEL", "INFO"))
        # Client libraries are chatty at INFO about every reconnect.
        for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _configured = True
    return logging.getLogger(f"lyssna.{service}")
