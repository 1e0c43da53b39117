"""``/v1/alerts``: alerts firing now, the event history, one alert with its deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from lyssna.common.contracts import AlertEvent
from lyssna.common.problems import error_responses

from ...store import DeliveryRecord
from ..deps import StoreDep
from ..params import QUERY_INT, DateTime

router = APIRouter(prefix="/alerts", tags=["alerts"])


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


class AlertDetail(BaseModel):
    alert_id: str
    active: bool
    events: list[dict[str, Any]]
    deliveries: list[DeliveryRecord]


def event_json(e: AlertEvent) -> dict[str, Any]:
    return e.model_dump(mode="json")


@router.get("", response_model=AlertsOut)
async def active_alerts(store: StoreDep):
    return AlertsOut(alerts=[ActiveAlert(**a) for a in await store.active_alerts()])


# Declared before /{alert_id}, which would otherwise take "history" for an id.
@router.get("/history", response_model=EventsOut, responses=error_responses(422))
async def history(store: StoreDep,
                  limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
                  before: Annotated[DateTime,
                                    Query(description="only events older than this; with a UTC offset")] = None):
    return EventsOut(events=[event_json(e) for e in await store.history(limit, before)])


@router.get("/{alert_id}", response_model=AlertDetail, responses=error_responses(404))
async def alert_detail(alert_id: str, store: StoreDep):
    events = await store.alert_events(alert_id)
    active = await store.is_active(alert_id)
    if not events and not active:
        raise HTTPException(404, f"no alert {alert_id!r}")
    return AlertDetail(alert_id=alert_id, active=active, events=[event_json(e) for e in events],
                       deliveries=await store.deliveries_for_alert(alert_id))
