"""Structured JSON logs on stderr, one object per line.

Pass ids as ``extra`` (``log.info("produced", extra={"post_id": ...})``) so they
become fields that log tools can filter on. Every line names its ``service``:
the one whose ``lyssna.<service>`` logger wrote it, else the first service set
up in the process (client libraries log on their own loggers).
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

_handler: logging.Handler | None = None
_services: list[str] = []  # set up in this process, first = default


class _ServiceField(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "service"):
            parts = record.name.split(".")
            named = parts[1] if len(parts) > 1 and parts[0] == "lyssna" else None
            record.service = named if named in _services else (_services[0] if _services else "lyssna")
        return True


def setup_logging(service: str, level: str | None = None) -> logging.Logger:
    global _handler
    if service not in _services:
        _services.append(service)
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(service)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        ))
        _handler.addFilter(_ServiceField())
        root = logging.getLogger()
        root.handlers[:] = [_handler]
        root.setLevel(level or os.environ.get("LYSSNA_LOG_LEVEL", "INFO"))
        # Client libraries are chatty at INFO about every reconnect.
        for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"lyssna.{service}")
