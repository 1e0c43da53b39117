"""The OpenAPI documents tell the truth: schemathesis, with every check, against the
live ingest and alerts processes (issue 16).

Each service runs as ``lyssna serve <service>`` on loopback, against the test's
Kafka topics and Redis prefix. ``st run`` reads the document from the service
itself (``/openapi.json``, with a key that holds every scope), then sends
examples, the coverage cases, positive and negative fuzzing and stateful
sequences (a rule or silence created, read back and deleted), and fails on any
answer the document does not describe: a status it does not list, a body or
content type that does not match, invalid data accepted or valid data refused,
a 5xx, a resource still there after its DELETE.

The run is bounded by examples per operation, not by time, and the seed is
fixed, so a failure reproduces; the report (stdout) is in the assertion message.
schemathesis has no serializer for ``application/x-ndjson``, so it sends ingest
JSON bodies only; test_ingest_api.py covers NDJSON.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.alerts_harness import alerts_config_file, count_rule, service_env, webhook
from tests.helpers.kafka_io import ServiceProcess, free_port
from tests.helpers.ingest_support import API_KEY

pytestmark = pytest.mark.integration

ST = Path(sys.executable).with_name("st")
# Cases per operation and phase: ~1.5 min for the alerts API's 23 operations on 2 cores.
MAX_EXAMPLES = {"ingest": 100, "alerts": 25}
SEED = 16

# Where the document cannot say all there is, and why; nothing else is relaxed.
ALERTS_CONFIG = """
# A rule the schema admits may still not run with this service's configuration:
# its window must be a whole number of count buckets (alerts.bucket) and what it
# looks back within alerts.retention, its webhooks and organization must be
# configured. The answer is 422 with the reason; JSON Schema cannot express a
# multiple of a duration written as text, nor a bound on a product of two fields.
[[operations]]
include-path-regex = "^/v1/rules"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# A silence that ends before it starts is refused (422); the schema cannot
# compare two fields. Unsafe or unknown matchers are 422 for the same reason.
[[operations]]
include-path = "/v1/silences"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "422"]
"""

INGEST_CONFIG = """
# A batch of more than ingest.max_batch_items posts (the body's maxItems) is
# refused whole with 413 Content Too Large, the status RFC 9110 gives to a request
# larger than the server will process; schemathesis expects a 400-family answer
# from its own list for invalid data and does not have 413 in it.
[[operations]]
include-path = "/v1/posts"
include-method = "POST"
checks.negative_data_rejection.expected-statuses = ["400", "401", "403", "413", "415", "422"]
"""


def st_run(service: str, port: int, config: str, tmp_path: Path) -> subprocess.CompletedProcess:
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config, encoding="utf-8")
    cmd = [str(ST), "--config-file", str(config_file), "run", f"http://127.0.0.1:{port}/openapi.json",
           "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(MAX_EXAMPLES[service]), "--seed", str(SEED), "--workers", "1",
           "--generation-database", "none", "--no-color", "--request-timeout", "30",
           "-H", f"Authorization: Bearer {API_KEY}"]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)


def assert_no_failures(result: subprocess.CompletedProcess, phases: tuple[str, ...]) -> None:
    """Every case passed, and every phase ran: a phase skipped would pass by testing nothing.
    Warnings (operations that mostly answer 404 or 422 to generated data) are no failures."""
    report = result.stdout[-20_000:] + result.stderr[-5000:]
    assert result.returncode == 0, report
    assert re.search(r"(\d+) generated, \1 passed", result.stdout), report
    for phase in phases:
        assert re.search(rf"✅ {phase}\n", result.stdout), (phase, report)


def test_ingest_api_matches_its_openapi_document(infra, topics, redis_prefix, tmp_path):
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url,
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": API_KEY, "LYSSNA_INGEST_PORT": str(port),
           **topics.as_env()}
    svc = ServiceProcess("ingest", env, port=port, log_dir=tmp_path).start()
    try:
        svc.wait_ready()
        # One operation, nothing to create and read back: no stateful phase to run.
        assert_no_failures(st_run("ingest", port, INGEST_CONFIG, tmp_path), ("Coverage", "Fuzzing"))
    finally:
        svc.stop()


def test_alerts_api_matches_its_openapi_document(settings, tmp_path, unique_id):
    port = free_port()
    config = alerts_config_file(tmp_path / "alerts.yaml", rules=[count_rule("cfg-rule")],
                                webhooks=[webhook("hook", "http://127.0.0.1:9/")])
    svc = ServiceProcess("alerts", service_env(settings, port=port, app_id=f"alerts-contract-{unique_id}"),
                         port=port, log_dir=tmp_path, config=config).start()
    try:
        svc.wait_ready()
        assert_no_failures(st_run("alerts", port, ALERTS_CONFIG, tmp_path), ("Coverage", "Fuzzing", "Stateful"))
    finally:
        svc.stop()
