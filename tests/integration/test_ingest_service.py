"""`lyssna serve ingest` as a real process: the push API and the connectors from
the `sources:` config run together; logs are JSON and carry no secrets."""

import json

import httpx
import pytest

from tests.helpers.kafka_io import ServiceProcess, free_port, wait_for
from tests.helpers.ingest_support import API_KEY, AUTH, topic_ids

pytestmark = pytest.mark.integration


def test_serve_ingest_runs_the_api_and_the_configured_sources(infra, topics, redis_prefix, tmp_path):
    replay = tmp_path / "posts.jsonl"
    replay.write_text("".join(json.dumps({"id": f"svc-{i}", "text": f"Acme Robotics {i}"}) + "\n"
                              for i in range(3)), encoding="utf-8")
    config = tmp_path / "lyssna.yaml"
    config.write_text(f"sources:\n  - type: file\n    name: demo-replay\n    path: {replay}\n", encoding="utf-8")
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url,
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": API_KEY,
           "LYSSNA_INGEST_PORT": str(port), **topics.as_env()}
    svc = ServiceProcess("ingest", env, port=port, log_dir=tmp_path, config=config).start()
    try:
        svc.wait_ready()
        wait_for(lambda: len(topic_ids(infra.bootstrap_servers, topics.posts_raw)) == 3,
                 what="the replayed file on the topic")
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{base}/v1/posts", json={"id": "svc-push", "text": "Nordvik Energi"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        metrics = httpx.get(f"{base}/metrics").text
        assert 'lyssna_ingest_posts_received_total{source="file"} 3.0' in metrics
        assert 'lyssna_ingest_posts_received_total{source="http"} 1.0' in metrics
        assert 'lyssna_ingest_connector_last_success_timestamp_seconds{connector="demo-replay"}' in metrics
    finally:
        svc.stop()
    assert sorted(topic_ids(infra.bootstrap_servers, topics.posts_raw)) == ["http/http/svc-push", "svc-0", "svc-1", "svc-2"]
    log = svc.log_path.read_text()
    assert API_KEY not in log
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["service"] == "ingest" for line in lines)
