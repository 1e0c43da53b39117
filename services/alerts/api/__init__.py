"""The alerts HTTP API: rules, alerts and their history, silences, deliveries, webhooks.

One router module per resource under ``routes/`` (a new resource is a new module
there, mounted below); what the routes need (store, settings, metrics,
readiness) comes from ``deps.py`` as typed dependencies.

Everything under ``/v1`` needs ``Authorization: Bearer <API key>``: reading
(GET) needs a key with the ``read`` scope, every write (rules, silences,
webhooks, redeliveries) one with ``admin``. ``/healthz``, ``/readyz`` and
``/metrics`` need none. The key, the body size and the concurrency cap are
checked before a body is read (``lyssna.common.http_guard``). Every error is an
RFC 9457 problem (``lyssna.common.problems``). Responses never carry secrets:
webhook URLs are shown as scheme, host and port only.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from lyssna.common import problems
from lyssna.common.auth import ADMIN, FASTAPI_NO_PUBLIC_DOCS, READ, add_protected_openapi, key_ring
from lyssna.common.health import health_router
from lyssna.common.http_guard import GUARD_ERRORS, guard

from .deps import ApiContext
from .routes import alerts, deliveries, privacy, rules, silences, webhooks

__all__ = ["ApiContext", "create_app", "required_scope"]


def required_scope(method: str, path: str) -> str:
    """Reading needs ``read``; anything that changes what is alerted or delivered, ``admin``;
    the audit log (which key did what) is for admins only."""
    if path == "/v1/audit" or path.startswith("/v1/audit/"):
        return ADMIN
    return READ if method in ("GET", "HEAD") else ADMIN


def create_app(ctx: ApiContext) -> FastAPI:
    settings = ctx.settings
    app = FastAPI(title="Lyssna alerts", version="1", **FASTAPI_NO_PUBLIC_DOCS,
                  description="Rules, alerts, silences and webhook deliveries of Lyssna.")
    app.state.alerts = ctx
    guard(app, settings.alerts, keys=key_ring(settings.api_keys, settings.scoped_api_keys),
          required_scope=required_scope, service="alerts")
    problems.install(app)
    add_protected_openapi(app)

    async def metrics() -> bytes:
        ctx.metrics.retry_queue_depth.set(await ctx.store.queue_depth())
        return ctx.metrics.render()

    app.include_router(health_router(ctx.readiness, metrics))
    # The guard answers these for every /v1 route, before the route runs.
    v1 = APIRouter(prefix="/v1", responses=problems.error_responses(*GUARD_ERRORS))
    for resource in (rules, alerts, deliveries, silences, webhooks, privacy):
        v1.include_router(resource.router)
    app.include_router(v1)
    _name_configured(app, settings)
    return app


def _name_configured(app: FastAPI, settings) -> None:
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = rules.document_names(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
