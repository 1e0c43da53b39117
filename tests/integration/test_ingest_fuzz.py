"""Fuzzing the running ingest service (a real uvicorn on a free port, real Kafka
and Redis): schema-driven cases from its own OpenAPI document (schemathesis,
valid and invalid), plus arbitrary bytes and arbitrary JSON bodies (hypothesis).
Whatever comes in: no 5xx, and the service is still alive afterwards."""

import asyncio
import json
import threading
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from tests.helpers.ingest_support import AUTH, free_port
from schemathesis import GenerationMode

from lyssna.ingest.service import IngestService

pytestmark = pytest.mark.integration
FUZZ = hsettings(max_examples=120, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))


@pytest.fixture
def live_service(settings):
    """The app served by uvicorn in a thread; yields its base URL."""
    small = settings.model_copy(update={"ingest": settings.ingest.model_copy(
        update={"max_body_bytes": 64 * 1024, "max_batch_items": 50})})
    port = free_port()
    small = small.model_copy(update={"ingest": small.ingest.model_copy(update={"host": "127.0.0.1", "port": port})})
    service = IngestService(small, run_connectors=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(30)
    deadline = time.monotonic() + 30
    while not (service.server and service.server.started):
        assert time.monotonic() < deadline, "the ingest API did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    yield base
    assert not service.tasks["http"].done(), "the service died during the fuzz run"
    assert httpx.get(f"{base}/healthz").status_code == 200
    asyncio.run_coroutine_threadsafe(service.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_driven_cases_never_get_a_5xx(live_service, mode):
    schema = schemathesis.openapi.from_url(f"{live_service}/openapi.json", headers=AUTH)
    statuses: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        has_body = operation.method.upper() == "POST"
        if mode is GenerationMode.NEGATIVE and not has_body:
            continue  # a GET without parameters has nothing to get wrong
        media = "application/json" if has_body else None

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode, media_type=media))
        def check(case):
            response = case.call(base_url=live_service, headers=AUTH, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.body, response.text)

        check()
    assert statuses and max(statuses) < 500
    if mode is GenerationMode.POSITIVE:
        assert statuses.get(200, 0) > 0   # valid posts were really accepted, not just refused


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20)
post_like = st.fixed_dictionaries({}, optional={
    "text": st.one_of(st.text(max_size=200), json_values), "id": st.one_of(st.text(max_size=20), st.integers()),
    "source": st.text(max_size=70), "url": st.text(max_size=50), "author": json_values,
    "created_at": st.one_of(st.text(max_size=30), st.integers(), st.floats()), "lang": st.text(max_size=20),
    "metadata": json_values, "unknown": json_values})


@FUZZ
@given(body=st.binary(max_size=2048), kind=st.sampled_from(["application/json", "application/x-ndjson"]))
def test_arbitrary_bytes_never_get_a_5xx(live_service, body, kind):
    r = httpx.post(f"{live_service}/v1/posts", content=body, headers={**AUTH, "Content-Type": kind}, timeout=60)
    assert r.status_code in (200, 400, 413), r.text


@FUZZ
@given(items=st.lists(st.one_of(post_like, json_values), max_size=8), ndjson=st.booleans())
def test_arbitrary_json_items_get_one_result_each(live_service, items, ndjson):
    if ndjson:
        body, kind = "\n".join(json.dumps(i) for i in items).encode(), "application/x-ndjson"
    else:
        body, kind = json.dumps(items).encode(), "application/json"
    r = httpx.post(f"{live_service}/v1/posts", content=body, headers={**AUTH, "Content-Type": kind}, timeout=60)
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        assert [x["index"] for x in r.json()["results"]] == list(range(len(items)))
        assert {x["status"] for x in r.json()["results"]} <= {"accepted", "duplicate", "rejected"}
