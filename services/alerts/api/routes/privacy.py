"""``/v1/erasures`` and ``/v1/audit``: forgetting a person or a post, and who changed what.

Both need the ``admin`` scope, reading the audit log included (``api.required_scope``):
it says which key did what, which is for whoever runs Lyssna, not for every reader.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lyssna.common.problems import error_responses
from lyssna.common.pseudonyms import AuthorKeyError

from ...audit import AuditEntry
from ...erasure import ErasureReport, author_target, forget, post_target
from ..deps import AuditDep, AuditLogDep, SettingsDep, StoreDep
from ..params import QUERY_INT, DateTime

router = APIRouter(tags=["privacy"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    author: str | None = Field(None, min_length=1, max_length=512,
                               description="an author's handle as the source shows it (with or without @)")
    post_id: str | None = Field(None, min_length=1, max_length=512, description="a post's id, as in alert samples")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ErasureIn":
        if (self.author is None) == (self.post_id is None):
            raise ValueError("give exactly one of 'author' or 'post_id'")
        return self


@router.post("/erasures", response_model=ErasureReport, responses=error_responses(409, 422))
async def erase(body: ErasureIn, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    """Remove every stored copy of an author's posts (or of one post) outside Kafka's log;
    the answer says what was removed and until when Kafka's topics still hold them."""
    if body.author is not None:
        try:
            target = author_target(body.author, settings, os.environ)
        except AuthorKeyError as e:  # names the variable and the fix, never a secret
            raise HTTPException(409, f"cannot compute the author's pseudonyms: {e}") from None
    else:
        target = post_target(body.post_id)
    return await forget(settings, store, target, audit.actor, audit.log)


class AuditOut(BaseModel):
    entries: list[AuditEntry]


@router.get("/audit", response_model=AuditOut, responses=error_responses(422))
async def audit_log(log: AuditLogDep,
                    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
                    before: Annotated[DateTime, Query(description="only entries older than this (the 'at' of the "
                                                                  "last entry seen); with a UTC offset")] = None):
    """Newest first."""
    return AuditOut(entries=await log.entries(limit, before))
