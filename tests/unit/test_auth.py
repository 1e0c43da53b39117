"""Scoped API keys and the guard that checks them before any body is read."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI, Request

from lyssna.common.auth import (
    ADMIN, FASTAPI_NO_PUBLIC_DOCS, INGEST, READ, add_protected_openapi, key_ring, parse_key_list,
)
from lyssna.common.config import ConfigError, load_settings
from lyssna.common.http_guard import HttpGuard
from tests.helpers.problems import problem

LIMIT = 1024


def scope_rule(method, path):
    return INGEST if path == "/v1/posts" else READ if method == "GET" else ADMIN


class Probe:
    """An app behind the guard that records how much body it read."""

    def __init__(self, *, cap=4, keys=None):
        self.read = []
        self.release = asyncio.Event()
        self.entered = 0
        app = FastAPI(**FASTAPI_NO_PUBLIC_DOCS)
        add_protected_openapi(app)

        @app.get("/healthz")
        async def healthz():
            return {"status": "ok"}

        @app.get("/v1/thing")
        async def thing():
            return {"ok": True}

        @app.post("/v1/thing")
        @app.post("/v1/posts")
        async def write(request: Request):
            body = await request.body()
            self.read.append(len(body))
            return {"read": len(body)}

        @app.post("/v1/slow")
        async def slow():
            self.entered += 1
            await self.release.wait()
            return {"ok": True}

        ring = key_ring(["all-scopes"], {INGEST: ["push-key"], READ: ["reader"], ADMIN: ["adminkey"]}
                        ) if keys is None else keys
        self.asgi = HttpGuard(app, keys=ring, required_scope=scope_rule, service="test",
                              max_body_bytes=LIMIT, max_concurrent_requests=cap)

    def client(self, key=None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.asgi), base_url="http://t", headers=headers)


def test_key_lists_parse_and_malformed_values_name_the_variable_without_the_key():
    assert parse_key_list("V", " a1, b2 ,,") == ["a1", "b2"]
    with pytest.raises(ValueError, match=r"^V: key #2 has a character") as e:
        parse_key_list("V", "good,sec ret")
    assert "sec ret" not in str(e.value)


def test_settings_read_scoped_keys_from_the_environment():
    s = load_settings(env={"LYSSNA_API_KEY": "k-all", "LYSSNA_INGEST_API_KEYS": "push-1,push-2",
                           "LYSSNA_ADMIN_API_KEYS": "adm-1"})
    assert s.api_keys == ["k-all"]
    assert s.scoped_api_keys == {INGEST: ["push-1", "push-2"], READ: [], ADMIN: ["adm-1"]}
    assert "push-1" not in s.model_dump_json() and "adm-1" not in repr(s)
    with pytest.raises(ConfigError, match="LYSSNA_READ_API_KEYS: key #1 .* Fix: "):
        load_settings(env={"LYSSNA_READ_API_KEYS": "käy"})


def test_scopes_of_each_key_and_admin_implies_read():
    ring = key_ring(["all-scopes"], {INGEST: ["push-key"], READ: ["reader"], ADMIN: ["adminkey", "push-key"]})
    assert ring.scopes(b"all-scopes") == {INGEST, READ, ADMIN}
    assert ring.scopes(b"reader") == {READ}
    assert ring.scopes(b"adminkey") == {ADMIN, READ}
    assert ring.scopes(b"push-key") == {INGEST, ADMIN, READ}
    assert ring.scopes(b"nope") is None and ring.scopes(b"") is None


async def test_unknown_key_is_401_before_the_body_is_read_and_public_paths_need_none():
    probe = Probe()
    for key in (None, "wrong"):
        async with probe.client(key) as c:
            r = await c.post("/v1/thing", content=b"x" * 100)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert "Bearer" in problem(r, 401)["detail"]
            assert (await c.get("/openapi.json")).status_code == 401
            assert (await c.get("/healthz")).status_code == 200
    async with probe.client() as c:
        r = await c.post("/v1/thing", content=b"x", headers={"Authorization": "Basic all-scopes"})
        assert r.status_code == 401
    assert probe.read == []


async def test_known_key_without_the_scope_is_403_naming_it():
    probe = Probe()
    async with probe.client("push-key") as push, probe.client("reader") as reader, \
            probe.client("adminkey") as admin:
        r = await push.post("/v1/thing", content=b"{}")
        assert r.status_code == 403 and "this key lacks the 'admin' scope" in problem(r, 403)["detail"]
        assert (await push.get("/v1/thing")).status_code == 403
        assert (await push.post("/v1/posts", content=b"{}")).status_code == 200
        assert (await reader.get("/v1/thing")).status_code == 200
        assert "/v1/thing" in (await reader.get("/openapi.json")).json()["paths"]
        assert (await reader.post("/v1/thing", content=b"{}")).status_code == 403
        assert (await reader.post("/v1/posts", content=b"{}")).status_code == 403
        assert (await admin.get("/v1/thing")).status_code == 200
        assert (await admin.post("/v1/thing", content=b"{}")).status_code == 200
    assert probe.read == [2, 2]


async def test_without_configured_keys_everything_is_refused_with_the_fix():
    probe = Probe(keys=key_ring([], {}))
    async with probe.client("anything") as c:
        r = await c.get("/v1/thing")
    assert r.status_code == 401 and "set LYSSNA_API_KEY" in problem(r, 401)["detail"]


async def test_bodies_past_the_limit_are_413_declared_or_streamed():
    probe = Probe()
    async with probe.client("all-scopes") as c:
        r = await c.post("/v1/thing", content=b"x" * (LIMIT + 1))
        assert r.status_code == 413 and f"{LIMIT} bytes" in problem(r, 413)["detail"]

        async def chunked():  # no Content-Length: counted while the app reads
            for _ in range(10):
                yield b"y" * 300
        r = await c.post("/v1/thing", content=chunked())
        assert r.status_code == 413 and f"{LIMIT} bytes" in problem(r, 413)["detail"]
        assert (await c.post("/v1/thing", content=b"z" * LIMIT)).json() == {"read": LIMIT}
    assert probe.read == [LIMIT]  # the app never saw the large ones


async def test_past_the_concurrency_cap_the_answer_is_503_with_retry_after():
    probe = Probe(cap=2)
    async with probe.client("all-scopes") as c:
        held = [asyncio.create_task(c.post("/v1/slow")) for _ in range(2)]
        while probe.entered < 2:
            await asyncio.sleep(0.01)
        r = await c.post("/v1/thing", content=b"{}")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "retry after 1 s" in problem(r, 503)["detail"]
        assert (await c.get("/healthz")).status_code == 200  # probes are not counted
        probe.release.set()
        assert [x.status_code for x in await asyncio.gather(*held)] == [200, 200]
        assert (await c.post("/v1/thing", content=b"{}")).status_code == 200
