"""Hostile requests to the running ingest and alerts processes (issue 15).

Each service runs as `lyssna serve <service>`, so the memory read from
/proc/<pid>/status is the memory of the real server: a 40 MB body without a key,
or past the limit with one, must be refused before the process holds it. The
peak (VmHWM) is reset before and read after the requests, so a body that was
read and freed in between still shows.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.helpers.alerts_harness import alerts_config_file, count_rule, service_env, webhook
from tests.helpers.kafka_io import ServiceProcess, free_port, wait_for
from tests.helpers.problems import problem
from tests.helpers.ingest_support import API_KEY

pytestmark = pytest.mark.integration

MB = 1024 * 1024
GROWTH_LIMIT_KIB = 20 * 1024     # "a few MB", with room for allocator noise
KEYS = {"LYSSNA_INGEST_API_KEYS": "push-key-1", "LYSSNA_READ_API_KEYS": "read-key-1",
        "LYSSNA_ADMIN_API_KEYS": "admin-key-1"}


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def big_json(size: int = 40 * MB) -> bytes:
    """A 40 MB JSON object that parses (one huge string), like the body in the issue."""
    head, tail = b'{"matchers": {"org": "', b'"}, "ends_at": "2999-01-01T00:00:00Z", "created_by": "x"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def chunks(body: bytes, size: int = MB):
    """The body without a Content-Length (chunked), as a client that streams it sends it."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_growth_kib(pid: int, send) -> int:
    """How far the process's peak resident memory rose while ``send()`` ran."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    before = status_kib(pid, "VmHWM")
    send()
    return status_kib(pid, "VmHWM") - before


def hold_request(port: int, path: str, key: str) -> socket.socket:
    """A request whose body never finishes: the server counts it in flight until the socket closes."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
    return sock


def answered(sock: socket.socket) -> bool:
    """Whether the server already answered (refused) a held request."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def assert_concurrency_cap(base: str, port: int, path: str, key: str, probe) -> None:
    """With ``max_concurrent_requests: 2`` two unfinished requests make the next one 503."""
    held: list[socket.socket] = []

    def busy():
        # A probe in flight when a held request arrived took its slot and got that one
        # refused: replace the refused ones until two are held.
        for s in [s for s in held if answered(s)]:
            held.remove(s)
            s.close()
        while len(held) < 2:
            held.append(hold_request(port, path, key))
        r = probe()
        return r if r.status_code == 503 else None

    try:
        refused = wait_for(busy, timeout=30, what="503 while two requests are in flight")
        assert refused.headers["retry-after"] == "1"
        assert httpx.get(f"{base}/healthz").status_code == 200  # probes are never refused
    finally:
        for s in held:
            s.close()
    wait_for(lambda: probe().status_code != 503, timeout=30, what="the slots to free once the clients left")


def test_ingest_refuses_hostile_bodies_before_reading_them(infra, topics, redis_prefix, tmp_path):
    config = tmp_path / "ingest.yaml"
    # 1 MiB: a body streamed past the limit is read up to it, and that much may show.
    config.write_text("ingest:\n  max_concurrent_requests: 2\n  max_body_bytes: 1048576\n", encoding="utf-8")
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url,
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": API_KEY, "LYSSNA_INGEST_PORT": str(port),
           **KEYS, **topics.as_env()}
    svc = ServiceProcess("ingest", env, port=port, log_dir=tmp_path, config=config).start()
    base = f"http://127.0.0.1:{port}"
    try:
        svc.wait_ready()
        with httpx.Client(base_url=base, timeout=60, headers={"Content-Type": "application/json"}) as c:
            ok = c.post("/v1/posts", json={"id": "h-1", "text": "Acme"}, headers=bearer("push-key-1"))
            assert ok.status_code == 200 and ok.json()["accepted"] == 1
            body = big_json()
            seen = []

            def send():
                for key in (None, "wrong-key"):
                    seen.append(c.post("/v1/posts", content=body, headers=bearer(key)).status_code)
                seen.append(c.post("/v1/posts", content=body, headers=bearer("push-key-1")).status_code)
                seen.append(c.post("/v1/posts", content=chunks(body), headers=bearer("push-key-1")).status_code)
                # the all-scopes key holds 'ingest' too
                seen.append(c.post("/v1/posts", content=chunks(body), headers=bearer(API_KEY)).status_code)
            growth = peak_growth_kib(svc.proc.pid, send)
            assert seen == [401, 401, 413, 413, 413]
            assert growth < GROWTH_LIMIT_KIB, f"ingest grew by {growth} KiB"

            for key in ("read-key-1", "admin-key-1"):
                r = c.post("/v1/posts", json={"text": "Acme"}, headers=bearer(key))
                assert r.status_code == 403 and "lacks the 'ingest' scope" in problem(r, 403)["detail"]
            assert c.get("/openapi.json", headers=bearer("read-key-1")).status_code == 200

            assert_concurrency_cap(base, port, "/v1/posts", "push-key-1", lambda: c.post(
                "/v1/posts", json={"id": "h-2", "text": "Acme"}, headers=bearer("push-key-1")))
            r = c.get("/readyz")
            assert r.json()["checks"] == {"kafka": "ok", "redis": "ok"}
    finally:
        svc.stop()
    log = svc.log_path.read_text()
    for secret in ("push-key-1", "read-key-1", "admin-key-1", API_KEY, "aaaaaaaa"):
        assert secret not in log


def test_alerts_refuses_hostile_bodies_before_reading_them(settings, tmp_path, unique_id):
    port = free_port()
    config = alerts_config_file(tmp_path / "alerts.yaml", rules=[count_rule("cfg-rule")],
                                webhooks=[webhook("hook", "http://127.0.0.1:9/hook")], max_concurrent_requests=2)
    env = service_env(settings, port=port, app_id=f"alerts-hostile-{unique_id}", **KEYS)
    svc = ServiceProcess("alerts", env, port=port, log_dir=tmp_path, config=config).start()
    base = f"http://127.0.0.1:{port}"
    writes = ("/v1/silences", "/v1/rules", "/v1/webhooks/hook/disable", "/v1/alerts/a1/redeliver",
              "/v1/deliveries/d1/redeliver")
    try:
        svc.wait_ready()
        with httpx.Client(base_url=base, timeout=60, headers={"Content-Type": "application/json"}) as c:
            assert c.get("/v1/rules", headers=bearer("admin-key-1")).status_code == 200
            body = big_json()
            seen = []

            def send():
                for path in writes:
                    seen.append(c.post(path, content=body).status_code)
                seen.append(c.put("/v1/rules/cfg-rule", content=body).status_code)
                seen.append(c.post("/v1/silences", content=body, headers=bearer("push-key-1")).status_code)
                seen.append(c.post("/v1/silences", content=body, headers=bearer("admin-key-1")).status_code)
                seen.append(c.post("/v1/rules", content=chunks(body), headers=bearer("admin-key-1")).status_code)
            growth = peak_growth_kib(svc.proc.pid, send)
            assert seen == [401] * (len(writes) + 1) + [403, 413, 413]
            assert growth < GROWTH_LIMIT_KIB, f"alerts grew by {growth} KiB"

            assert_concurrency_cap(base, port, "/v1/silences", "admin-key-1",
                                   lambda: c.get("/v1/silences", headers=bearer("read-key-1")))
            r = c.get("/readyz")
            assert r.json()["checks"] == {"redis": "ok", "kafka": "ok", "counts": "ok"}
    finally:
        svc.stop()
    log = svc.log_path.read_text()
    for secret in ("push-key-1", "read-key-1", "admin-key-1", "aaaaaaaa"):
        assert secret not in log
