"""Parameter types that take exactly what the OpenAPI document says.

Pydantic's lax parsing would take ``limit=1.0``, ``active=yes`` or
``before=1700000000`` (or ``"ends_at": 1700000000`` in a body) although the
document says integer, boolean and an RFC 3339 date-time: a client generated from the document must not depend on what happens
to be tolerated, and a mistyped query should be told so (422), not guessed.
The patterns have no nested quantifiers: linear in the text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_INTEGER = re.compile(r"-?[0-9]{1,18}")
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _integer(v: Any) -> Any:
    if isinstance(v, str) and not _INTEGER.fullmatch(v):
        raise ValueError("expected an integer, e.g. 100")
    return v


def _boolean(v: Any) -> Any:
    if isinstance(v, str):
        if v not in ("true", "false"):
            raise ValueError("expected true or false")
        return v == "true"
    return v


def _date_time(v: Any) -> Any:
    if isinstance(v, str):
        if not _RFC3339.fullmatch(v):
            raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-01-31T12:00:00Z")
        return v
    if isinstance(v, datetime):
        return v
    raise ValueError("expected an RFC 3339 date-time")


QUERY_INT = BeforeValidator(_integer)  # beside Query(ge=..., le=...) in one Annotated, so both apply
QueryBool = Annotated[bool, BeforeValidator(_boolean)]
DateTime = Annotated[AwareDatetime, BeforeValidator(_date_time)]
