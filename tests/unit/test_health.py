"""The one /healthz, /readyz, /metrics shape every service answers with."""

import httpx
from fastapi import FastAPI

from lyssna.common.health import health_router, readiness


def test_ready_only_when_every_check_is_ok_and_details_stay_out():
    assert readiness({"kafka": "ok", "redis": "ok"}) == ({"status": "ready", "checks": {"kafka": "ok", "redis": "ok"}}, 200)
    body, status = readiness({"kafka": "ok", "redis": "unreachable: ConnectionError: 10.1.2.3:6379"})
    assert status == 503
    assert body == {"status": "not ready", "checks": {"kafka": "ok", "redis": "unreachable"}}


async def test_the_router_answers_the_three_endpoints():
    state = {"model": "loading"}

    async def checks():
        return dict(state)

    app = FastAPI()
    app.include_router(health_router(checks, lambda: b"# HELP x\n"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"status": "not ready", "checks": {"model": "loading"}})
        state["model"] = "ok"
        assert (await c.get("/readyz")).json()["status"] == "ready"
        m = await c.get("/metrics")
        assert m.text == "# HELP x\n" and m.headers["content-type"].startswith("text/plain")
