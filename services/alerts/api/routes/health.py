"""``/healthz``, ``/readyz`` and ``/metrics``: public (no key), for probes and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from lyssna.common.metrics import PrometheusResponse

from ..deps import MetricsDep, ReadinessDep, StoreDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


def short_state(check: str) -> str:
    """A readiness value without its detail ("unreachable: ConnectionError" -> "unreachable"):
    /readyz is public."""
    return check.split(":", 1)[0]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "not ready; `checks` says what is not ok"}})
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    checks = {name: short_state(v) for name, v in (await readiness()).items()}
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", response_class=PrometheusResponse, summary="Prometheus metrics")
async def metrics(metrics: MetricsDep, store: StoreDep) -> PrometheusResponse:
    metrics.retry_queue_depth.set(await store.queue_depth())
    return PrometheusResponse(metrics.render())
