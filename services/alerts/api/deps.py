"""What the alerts API's routes depend on, each typed as ``Annotated[..., Depends(...)]``.

``create_app`` puts one :class:`ApiContext` on ``app.state``; a route names the
part it needs (``store: StoreDep``) and gets it per request, so a route module
is plain functions that a reader can follow without the closure they once lived in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Awaitable, Callable

from fastapi import Depends, Request

from lyssna.common.config import Settings

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


def get_context(request: Request) -> ApiContext:
    return request.app.state.alerts


def get_settings(ctx: Annotated[ApiContext, Depends(get_context)]) -> Settings:
    return ctx.settings


def get_store(ctx: Annotated[ApiContext, Depends(get_context)]) -> AlertsStore:
    return ctx.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[AlertsStore, Depends(get_store)]
