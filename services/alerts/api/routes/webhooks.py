"""``/v1/webhooks``: the config file's webhooks, shown masked, enabled and disabled here."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from lyssna.common.config import Settings
from lyssna.common.problems import error_responses

from ...delivery import mask_url
from ...store import AlertsStore
from ..deps import AuditDep, SettingsDep, StoreDep

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


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


async def _webhook_out(name: str, settings: Settings, store: AlertsStore) -> WebhookOut:
    w = settings.webhook(name)
    d = (await store.disabled_webhooks()).get(name)
    return WebhookOut(name=w.name, url=mask_url(w.url), format=w.format, signed=bool(w.secret_env),
                      allow_private_network=w.allow_private_network, enabled=d is None,
                      disabled_at=d["disabled_at"] if d else None, disabled_reason=d["reason"] if d else None)


def _known(name: str, settings: Settings) -> None:
    if name not in {w.name for w in settings.webhooks}:
        raise HTTPException(404, f"no webhook named {name!r}")


@router.get("", response_model=WebhooksOut)
async def list_webhooks(settings: SettingsDep, store: StoreDep):
    return WebhooksOut(webhooks=[await _webhook_out(w.name, settings, store) for w in settings.webhooks])


@router.get("/{name}", response_model=WebhookOut, responses=error_responses(404))
async def get_webhook(name: str, settings: SettingsDep, store: StoreDep):
    _known(name, settings)
    return await _webhook_out(name, settings, store)


@router.post("/{name}/enable", response_model=WebhookOut, responses=error_responses(404))
async def enable_webhook(name: str, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    _known(name, settings)
    if await store.enable_webhook(name):
        await audit("webhook.enable", name)
    return await _webhook_out(name, settings, store)


@router.post("/{name}/disable", response_model=WebhookOut, responses=error_responses(404))
async def disable_webhook(name: str, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    _known(name, settings)
    if await store.disable_webhook(name, "disabled through the API"):
        await audit("webhook.disable", name)
    return await _webhook_out(name, settings, store)
