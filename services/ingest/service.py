"""``lyssna serve ingest``: the push API and the configured connectors in one process."""

from __future__ import annotations

import uvicorn

from lyssna.common.config import Settings
from lyssna.common.logs import setup_logging

from .app import create_app


def run(settings: Settings) -> None:
    log = setup_logging("ingest")
    app = create_app(settings, run_connectors=True)
    log.info("ingest starting", extra={"host": settings.ingest.host, "port": settings.ingest.port,
                                        "sources": len(settings.sources)})
    # log_config=None keeps our JSON logging; access logs would be one line per batch.
    uvicorn.run(app, host=settings.ingest.host, port=settings.ingest.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    from lyssna.common.config import load_settings

    run(load_settings())
