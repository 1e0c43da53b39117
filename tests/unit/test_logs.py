"""JSON log lines name the service that wrote them, also with several in one process."""

import json
import logging

from lyssna.common import logs


def test_each_service_keeps_its_name_in_one_process(monkeypatch, capsys):
    monkeypatch.setattr(logs, "_handler", None)
    monkeypatch.setattr(logs, "_services", [])
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup_logging("ingest").warning("from ingest", extra={"post_id": "p1"})
        logs.setup_logging("alerts").warning("from alerts")
        logging.getLogger("lyssna.alerts.delivery").warning("from a module of alerts")
        logging.getLogger("kafka.conn").warning("from a library")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert [(line["message"], line["service"]) for line in lines] == [
        ("from ingest", "ingest"), ("from alerts", "alerts"), ("from a module of alerts", "alerts"),
        ("from a library", "ingest")]
    assert lines[0]["post_id"] == "p1" and lines[0]["level"] == "WARNING"
