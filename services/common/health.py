"""``/healthz``, ``/readyz`` and ``/metrics``: the same three endpoints, the same
answers, in every service (public: no key, for probes and Prometheus).

- ``/healthz``: 200 ``{"status": "ok"}`` while the process serves HTTP.
- ``/readyz``: 200 ``{"status": "ready", "checks": {...}}`` when every check is
  ``"ok"``, else 503 ``{"status": "not ready", "checks": {...}}``. Each check is
  a short state (``ok``, ``down``, ``loading``, ``stalled``...): the endpoint is
  public, so why something is not ok goes to the service's log, not here.
- ``/metrics``: the Prometheus exposition of the service's registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .metrics import PrometheusResponse

Checks = Callable[[], Awaitable[dict[str, str]]]

#: The paths every service answers without a key (the HTTP guard lets them through).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


def short_state(check: str) -> str:
    """A check without any detail after a colon ("unreachable: ConnectionError" -> "unreachable")."""
    return check.split(":", 1)[0].strip()


def readiness(checks: dict[str, str]) -> tuple[dict, int]:
    """The /readyz body and status for ``checks``."""
    short = {name: short_state(v) for name, v in checks.items()}
    ready = all(v == "ok" for v in short.values())
    return {"status": "ready" if ready else "not ready", "checks": short}, 200 if ready else 503


def health_router(checks: Checks, render_metrics: Callable[[], bytes | Awaitable[bytes]]) -> APIRouter:
    """The three endpoints over a service's readiness checks and metrics."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="the process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="the service can do its work", response_model=Readiness,
                responses={503: {"model": Readiness, "description": "not ready; `checks` says what is not ok"}})
    async def readyz() -> JSONResponse:
        body, status = readiness(await checks())
        return JSONResponse(body, status_code=status)

    @router.get("/metrics", summary="Prometheus metrics", response_class=PrometheusResponse)
    async def metrics() -> PrometheusResponse:
        text = render_metrics()
        return PrometheusResponse(await text if inspect.isawaitable(text) else text)

    return router
