"""The alerts HTTP API: rules, alerts and their history, silences, deliveries, webhooks.

Everything under ``/v1`` needs ``Authorization: Bearer <API key>``: reading
(GET) needs a key with the ``read`` scope, every write (rules, silences,
webhooks, redeliveries) one with ``admin``. ``/healthz``, ``/readyz`` and
``/metrics`` need none. The key, the body size and the concurrency cap are
checked before a body is read (``lyssna.common.http_guard``). Responses never
carry secrets: webhook URLs are shown as scheme, host and port only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping

from fastapi import APIRouter, Body, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lyssna.common.auth import ADMIN, FASTAPI_NO_PUBLIC_DOCS, READ, add_protected_openapi, key_ring
from lyssna.common.config import RuleConfig, Settings
from lyssna.common.contracts import AlertEvent, utcnow
from lyssna.common.http_guard import guard

from .delivery import mask_url, redeliver
from prometheus_client import CONTENT_TYPE_LATEST

from .metrics import AlertsMetrics
from .ruleset import RuleError, check_rule, merge
from .silences import LABELS, Silence, matcher_problems
from .store import AlertsStore, DeliveryRecord


@dataclass
class ApiContext:
    settings: Settings
    store: AlertsStore
    metrics: AlertsMetrics
    # name -> "ok" or what is wrong; readiness is all "ok"
    readiness: Callable[[], Awaitable[dict[str, str]]]


# ---------------------------------------------------------------- schemas

class RuleOut(BaseModel):
    source: str = Field(description="'config' (read-only here) or 'api'")
    rule: dict[str, Any]


class RulesOut(BaseModel):
    rules: list[RuleOut]


class ActiveAlert(BaseModel):
    alert_id: str
    rule: str
    org: str
    fired_at: datetime
    event: dict[str, Any]


class AlertsOut(BaseModel):
    alerts: list[ActiveAlert]


class EventsOut(BaseModel):
    events: list[dict[str, Any]]


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryRecord]


class AlertDetail(BaseModel):
    alert_id: str
    active: bool
    events: list[dict[str, Any]]
    deliveries: list[DeliveryRecord]


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: str | None = Field(None, description="only this webhook's deliveries")
    event_id: str | None = Field(None, description="only this event's deliveries")


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # At most an exact and a pattern matcher per label.
    matchers: dict[str, str] = Field(min_length=1, max_length=2 * len(LABELS))
    starts_at: datetime | None = Field(None, description="default: now")
    ends_at: datetime
    created_by: str = Field(min_length=1, max_length=256)
    comment: str = Field("", max_length=2000)

    @field_validator("matchers")
    @classmethod
    def _safe_matchers(cls, v: dict[str, str]) -> dict[str, str]:
        problems = matcher_problems(v)
        if problems:
            raise ValueError("; ".join(problems))
        return v


class SilencesOut(BaseModel):
    silences: list[Silence]


class WebhookOut(BaseModel):
    name: str
    url: str = Field(description="masked: scheme, host and port only")
    format: str
    signed: bool
    allow_private_network: bool
    enabled: bool
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class WebhooksOut(BaseModel):
    webhooks: list[WebhookOut]


def _event_json(e: AlertEvent) -> dict[str, Any]:
    return e.model_dump(mode="json")


# ---------------------------------------------------------------- app

def required_scope(method: str, path: str) -> str:
    """Reading needs ``read``; anything that changes what is alerted or delivered, ``admin``."""
    return READ if method in ("GET", "HEAD") else ADMIN


def short_state(check: str) -> str:
    """A readiness value without its detail ("unreachable: ConnectionError" -> "unreachable"):
    /readyz is public."""
    return check.split(":", 1)[0]


def create_app(ctx: ApiContext) -> FastAPI:
    settings, store = ctx.settings, ctx.store

    app = FastAPI(title="Lyssna alerts", version="1", **FASTAPI_NO_PUBLIC_DOCS,
                  description="Rules, alerts, silences and webhook deliveries of Lyssna.")
    guard(app, settings.alerts, keys=key_ring(settings.api_keys, settings.scoped_api_keys),
          required_scope=required_scope, service="alerts")
    add_protected_openapi(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # What is wrong and where, without repeating the rejected input back.
        return JSONResponse({"detail": [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]},
                            status_code=422)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks = {name: short_state(v) for name, v in (await ctx.readiness()).items()}
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        ctx.metrics.retry_queue_depth.set(await store.queue_depth())
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(prefix="/v1")

    # ------------------------------------------------------------ rules

    config_names = {r.name for r in settings.rules}

    async def all_rules() -> list[RuleOut]:
        rules, _ = merge(settings, await store.api_rules())
        return [RuleOut(source="config" if r.name in config_names else "api", rule=r.model_dump(mode="json"))
                for r in rules]

    def validated(rule: RuleConfig) -> RuleConfig:
        try:
            check_rule(rule, settings)
        except RuleError as e:
            raise HTTPException(422, str(e)) from None
        return rule

    def read_only(name: str) -> HTTPException:
        return HTTPException(status.HTTP_409_CONFLICT,
                             f"rule {name!r} is defined in the config file and is read-only here; "
                             f"change it in the file")

    @v1.get("/rules", response_model=RulesOut, tags=["rules"])
    async def list_rules():
        return RulesOut(rules=await all_rules())

    @v1.get("/rules/{name}", response_model=RuleOut, tags=["rules"])
    async def get_rule(name: str):
        for r in await all_rules():
            if r.rule["name"] == name:
                return r
        raise HTTPException(404, f"no rule named {name!r}")

    @v1.post("/rules", response_model=RuleOut, status_code=201, tags=["rules"])
    async def create_rule(rule: RuleConfig):
        if rule.name in config_names:
            raise HTTPException(409, f"a config rule is named {rule.name!r}; choose another name")
        validated(rule)
        if not await store.create_api_rule(rule):
            raise HTTPException(409, f"a rule named {rule.name!r} exists; PUT /v1/rules/{rule.name} to change it")
        return RuleOut(source="api", rule=rule.model_dump(mode="json"))

    @v1.put("/rules/{name}", response_model=RuleOut, tags=["rules"])
    async def replace_rule(name: str, rule: RuleConfig):
        if name in config_names:
            raise read_only(name)
        if rule.name != name:
            raise HTTPException(422, f"the body names rule {rule.name!r} but the path {name!r}; rules cannot be renamed")
        if await store.get_api_rule(name) is None:
            raise HTTPException(404, f"no API rule named {name!r}; POST /v1/rules creates one")
        validated(rule)
        await store.replace_api_rule(rule)
        return RuleOut(source="api", rule=rule.model_dump(mode="json"))

    @v1.delete("/rules/{name}", status_code=204, tags=["rules"])
    async def delete_rule(name: str):
        if name in config_names:
            raise read_only(name)
        if not await store.delete_api_rule(name):
            raise HTTPException(404, f"no API rule named {name!r}")
        return Response(status_code=204)

    # ------------------------------------------------------------ alerts

    @v1.get("/alerts", response_model=AlertsOut, tags=["alerts"])
    async def active_alerts():
        return AlertsOut(alerts=[ActiveAlert(**a) for a in await store.active_alerts()])

    @v1.get("/alerts/history", response_model=EventsOut, tags=["alerts"])
    async def history(limit: int = Query(100, ge=1, le=1000),
                      before: datetime | None = Query(None, description="only events older than this")):
        return EventsOut(events=[_event_json(e) for e in await store.history(limit, before)])

    @v1.get("/alerts/{alert_id}", response_model=AlertDetail, tags=["alerts"])
    async def alert_detail(alert_id: str):
        events = await store.alert_events(alert_id)
        active = await store.is_active(alert_id)
        if not events and not active:
            raise HTTPException(404, f"no alert {alert_id!r}")
        return AlertDetail(alert_id=alert_id, active=active, events=[_event_json(e) for e in events],
                           deliveries=await store.deliveries_for_alert(alert_id))

    @v1.get("/alerts/{alert_id}/deliveries", response_model=DeliveriesOut, tags=["deliveries"])
    async def alert_deliveries(alert_id: str):
        return DeliveriesOut(deliveries=await store.deliveries_for_alert(alert_id))

    async def delivery_or_404(delivery_id: str) -> DeliveryRecord:
        record = await store.get_delivery(delivery_id)
        if record is None:
            raise HTTPException(404, f"no delivery {delivery_id!r}")
        return record

    async def redeliver_or_409(record: DeliveryRecord, disabled: Mapping[str, object]) -> DeliveryRecord:
        try:
            return await redeliver(store, record, disabled)
        except ValueError as e:  # a delivery that cannot be sent again now, and why
            raise HTTPException(409, str(e)) from None

    @v1.post("/alerts/{alert_id}/redeliver", response_model=DeliveriesOut, status_code=202, tags=["deliveries"])
    async def redeliver_alert(alert_id: str, body: RedeliverIn | None = Body(None)):
        body = body or RedeliverIn()
        records = [r for r in await store.deliveries_for_alert(alert_id)
                   if (body.webhook is None or r.webhook == body.webhook)
                   and (body.event_id is None or r.event_id == body.event_id)]
        if not records:
            raise HTTPException(404, f"no deliveries of alert {alert_id!r} match")
        disabled = await store.disabled_webhooks()
        return DeliveriesOut(deliveries=[await redeliver_or_409(r, disabled) for r in records])

    @v1.get("/deliveries/{delivery_id}", response_model=DeliveryRecord, tags=["deliveries"])
    async def get_delivery(delivery_id: str):
        return await delivery_or_404(delivery_id)

    @v1.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryRecord, status_code=202,
             tags=["deliveries"])
    async def redeliver_one(delivery_id: str):
        record = await delivery_or_404(delivery_id)
        return await redeliver_or_409(record, await store.disabled_webhooks())

    # ------------------------------------------------------------ silences

    @v1.get("/silences", response_model=SilencesOut, tags=["silences"])
    async def list_silences(active: bool = Query(False, description="only silences in force now")):
        now = utcnow()
        items = await store.silences()
        return SilencesOut(silences=[s for s in items if not active or s.is_active(now)])

    @v1.post("/silences", response_model=Silence, status_code=201, tags=["silences"])
    async def create_silence(body: SilenceIn):
        try:
            silence = Silence(id=f"sil_{uuid.uuid4().hex[:16]}", matchers=body.matchers,
                              starts_at=body.starts_at or utcnow(), ends_at=body.ends_at,
                              created_by=body.created_by, comment=body.comment)
        except ValueError as e:
            raise HTTPException(422, _first_error(e)) from None
        await store.put_silence(silence)
        return silence

    @v1.get("/silences/{silence_id}", response_model=Silence, tags=["silences"])
    async def get_silence(silence_id: str):
        s = await store.get_silence(silence_id)
        if s is None:
            raise HTTPException(404, f"no silence {silence_id!r}")
        return s

    @v1.delete("/silences/{silence_id}", status_code=204, tags=["silences"])
    async def delete_silence(silence_id: str):
        if not await store.delete_silence(silence_id):
            raise HTTPException(404, f"no silence {silence_id!r}")
        return Response(status_code=204)

    # ------------------------------------------------------------ webhooks

    async def webhook_out(name: str) -> WebhookOut:
        w = settings.webhook(name)
        d = (await store.disabled_webhooks()).get(name)
        return WebhookOut(name=w.name, url=mask_url(w.url), format=w.format, signed=bool(w.secret_env),
                          allow_private_network=w.allow_private_network, enabled=d is None,
                          disabled_at=d["disabled_at"] if d else None, disabled_reason=d["reason"] if d else None)

    def known(name: str) -> None:
        if name not in {w.name for w in settings.webhooks}:
            raise HTTPException(404, f"no webhook named {name!r}")

    @v1.get("/webhooks", response_model=WebhooksOut, tags=["webhooks"])
    async def list_webhooks():
        return WebhooksOut(webhooks=[await webhook_out(w.name) for w in settings.webhooks])

    @v1.get("/webhooks/{name}", response_model=WebhookOut, tags=["webhooks"])
    async def get_webhook(name: str):
        known(name)
        return await webhook_out(name)

    @v1.post("/webhooks/{name}/enable", response_model=WebhookOut, tags=["webhooks"])
    async def enable_webhook(name: str):
        known(name)
        await store.enable_webhook(name)
        return await webhook_out(name)

    @v1.post("/webhooks/{name}/disable", response_model=WebhookOut, tags=["webhooks"])
    async def disable_webhook(name: str):
        known(name)
        await store.disable_webhook(name, "disabled through the API")
        return await webhook_out(name)

    app.include_router(v1)
    return app


def _first_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            return str(first.get("msg", e))
        except Exception:
            pass
    return str(e)

