"""``/v1/silences``: matchers that hold back deliveries for a while."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lyssna.common.contracts import utcnow
from lyssna.common.problems import error_responses

from ...silences import LABELS, MAX_VALUE_CHARS, REGEX_SUFFIX, Silence, SilenceNote, matcher_problems
from ..deps import AuditDep, StoreDep
from ..params import DateTime, QueryBool

router = APIRouter(prefix="/silences", tags=["silences"])


class SilenceIn(SilenceNote):
    model_config = ConfigDict(extra="forbid")
    # At most an exact and a pattern matcher per label.
    matchers: dict[str, Annotated[str, Field(max_length=MAX_VALUE_CHARS)]] = Field(
        min_length=1, max_length=2 * len(LABELS),
        description="label: exact value, or label=~: an RE2 pattern matched against the whole value",
        json_schema_extra={"propertyNames": {"enum": [*LABELS, *(f"{label}{REGEX_SUFFIX}" for label in LABELS)]}})
    starts_at: DateTime | None = Field(None, description="default: now")
    ends_at: DateTime

    @field_validator("matchers")
    @classmethod
    def _safe_matchers(cls, v: dict[str, str]) -> dict[str, str]:
        problems = matcher_problems(v)
        if problems:
            raise ValueError("; ".join(problems))
        return v


class SilencesOut(BaseModel):
    silences: list[Silence]


@router.get("", response_model=SilencesOut, responses=error_responses(422))
async def list_silences(store: StoreDep,
                        active: Annotated[QueryBool, Query(description="only silences in force now")] = False):
    now = utcnow()
    return SilencesOut(silences=[s for s in await store.silences() if not active or s.is_active(now)])


# The links let a client (and schemathesis' stateful phase) follow a new silence to its resource.
_BY_ID = {"silence_id": "$response.body#/id"}
_CREATED = {"description": "the silence, in force from starts_at", "links": {
    "GetSilence": {"operationRef": "#/paths/~1v1~1silences~1{silence_id}/get", "parameters": _BY_ID},
    "DeleteSilence": {"operationRef": "#/paths/~1v1~1silences~1{silence_id}/delete", "parameters": _BY_ID}}}


@router.post("", response_model=Silence, status_code=201, responses={201: _CREATED, **error_responses(422)})
async def create_silence(body: SilenceIn, store: StoreDep, audit: AuditDep):
    try:
        silence = Silence(id=f"sil_{uuid.uuid4().hex[:16]}", matchers=body.matchers,
                          starts_at=body.starts_at or utcnow(), ends_at=body.ends_at,
                          created_by=body.created_by, comment=body.comment)
    except ValidationError as e:  # e.g. ends_at not after starts_at: answered like any invalid body
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None
    await store.put_silence(silence)
    await audit("silence.create", silence.id, matchers=silence.matchers, ends_at=silence.ends_at.isoformat())
    return silence


@router.get("/{silence_id}", response_model=Silence, responses=error_responses(404))
async def get_silence(silence_id: str, store: StoreDep):
    s = await store.get_silence(silence_id)
    if s is None:
        raise HTTPException(404, f"no silence {silence_id!r}")
    return s


@router.delete("/{silence_id}", status_code=204, response_class=Response, responses=error_responses(404))
async def delete_silence(silence_id: str, store: StoreDep, audit: AuditDep):
    if not await store.delete_silence(silence_id):
        raise HTTPException(404, f"no silence {silence_id!r}")
    await audit("silence.delete", silence_id)
    return Response(status_code=204)
