"""Webhook deliveries: one alert's, one by id, and sending them again."""

from __future__ import annotations

from typing import Annotated, Mapping

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from lyssna.common.problems import error_responses

from ...delivery import redeliver
from ...store import AlertsStore, DeliveryRecord
from ..deps import StoreDep

router = APIRouter(tags=["deliveries"])


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryRecord]


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook: str | None = Field(None, description="only this webhook's deliveries")
    event_id: str | None = Field(None, description="only this event's deliveries")


async def _delivery_or_404(store: AlertsStore, delivery_id: str) -> DeliveryRecord:
    record = await store.get_delivery(delivery_id)
    if record is None:
        raise HTTPException(404, f"no delivery {delivery_id!r}")
    return record


async def _redeliver_or_409(store: AlertsStore, record: DeliveryRecord,
                            disabled: Mapping[str, object]) -> DeliveryRecord:
    try:
        return await redeliver(store, record, disabled)
    except ValueError as e:  # a delivery that cannot be sent again now, and why
        raise HTTPException(409, str(e)) from None


@router.get("/alerts/{alert_id}/deliveries", response_model=DeliveriesOut)
async def alert_deliveries(alert_id: str, store: StoreDep):
    return DeliveriesOut(deliveries=await store.deliveries_for_alert(alert_id))


@router.post("/alerts/{alert_id}/redeliver", response_model=DeliveriesOut, status_code=202,
             responses=error_responses(404, 409, 422))
async def redeliver_alert(alert_id: str, store: StoreDep,
                          body: Annotated[RedeliverIn | None, Body()] = None):
    body = body or RedeliverIn()
    records = [r for r in await store.deliveries_for_alert(alert_id)
               if (body.webhook is None or r.webhook == body.webhook)
               and (body.event_id is None or r.event_id == body.event_id)]
    if not records:
        raise HTTPException(404, f"no deliveries of alert {alert_id!r} match")
    disabled = await store.disabled_webhooks()
    return DeliveriesOut(deliveries=[await _redeliver_or_409(store, r, disabled) for r in records])


@router.get("/deliveries/{delivery_id}", response_model=DeliveryRecord, responses=error_responses(404))
async def get_delivery(delivery_id: str, store: StoreDep):
    return await _delivery_or_404(store, delivery_id)


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryRecord, status_code=202,
             responses=error_responses(404, 409))
async def redeliver_one(delivery_id: str, store: StoreDep):
    record = await _delivery_or_404(store, delivery_id)
    return await _redeliver_or_409(store, record, await store.disabled_webhooks())
