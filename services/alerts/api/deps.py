"""What the alerts API's routes depend on, each typed as ``Annotated[..., Depends(...)]``.

``create_app`` puts one :class:`ApiContext` on ``app.state``; a route names the
part it needs (``store: StoreDep``) and gets it per request, so a route module
is plain functions that a reader can follow without the closure they once lived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Awaitable, Callable

from fastapi import Depends, Request

from lyssna.common.config import Settings

from ..audit import AuditLog
from ..metrics import AlertsMetrics
from ..store import AlertsStore

# name -> "ok" or what is wrong; the service is ready when every value is "ok"
Readiness = Callable[[], Awaitable[dict[str, str]]]


@dataclass
class ApiContext:
    settings: Settings
    store: AlertsStore
    metrics: AlertsMetrics
    readiness: Readiness
    audit: AuditLog | None = None  # None: made from the store and settings on first use

    def audit_log(self) -> AuditLog:
        if self.audit is None:
            self.audit = AuditLog(self.store.redis, self.store.p, self.settings.retention)
        return self.audit


def get_context(request: Request) -> ApiContext:
    return request.app.state.alerts


def get_settings(ctx: Annotated[ApiContext, Depends(get_context)]) -> Settings:
    return ctx.settings


def get_store(ctx: Annotated[ApiContext, Depends(get_context)]) -> AlertsStore:
    return ctx.store


@dataclass
class Auditor:
    """Records what this request's key changed (``lyssna.alerts.audit``)."""

    log: AuditLog
    actor: str

    async def __call__(self, action: str, target: str | None = None, **detail: Any) -> None:
        await self.log.record(self.actor, action, target, detail)


def get_auditor(request: Request, ctx: Annotated[ApiContext, Depends(get_context)]) -> Auditor:
    # The guard put the key's id on the request (lyssna.common.http_guard).
    return Auditor(ctx.audit_log(), getattr(request.state, "api_key_id", "unknown"))


def get_audit_log(ctx: Annotated[ApiContext, Depends(get_context)]) -> AuditLog:
    return ctx.audit_log()


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AlertsStore, Depends(get_store)]
AuditDep = Annotated[Auditor, Depends(get_auditor)]
AuditLogDep = Annotated[AuditLog, Depends(get_audit_log)]
