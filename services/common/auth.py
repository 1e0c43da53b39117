"""API-key authentication shared by the HTTP services.

Every endpoint except /healthz, /readyz and /metrics needs
``Authorization: Bearer <key>``; that includes the OpenAPI document, which is
served at /openapi.json to key holders only (no interactive docs page, which
could not send the key).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

FASTAPI_NO_PUBLIC_DOCS = {"docs_url": None, "redoc_url": None, "openapi_url": None}


def api_key_dependency(keys: Sequence[str], service: str) -> Callable:
    """A FastAPI dependency that accepts any of ``keys``, compared in constant time."""
    expected = [k.encode() for k in keys]
    bearer = HTTPBearer(auto_error=False)

    def require_key(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = creds.credentials.encode("utf-8", "replace") if creds else b""
        # Compare with every key, so the time taken says nothing about which matched.
        ok = False
        for key in expected:
            ok |= hmac.compare_digest(given, key)
        if not ok:
            detail = ("missing or wrong API key; send 'Authorization: Bearer <key>'" if expected else
                      f"no API keys are configured; set LYSSNA_API_KEY for the {service} service")
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})

    return require_key


def add_protected_openapi(app: FastAPI, require_key: Callable) -> None:
    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_key)])
    async def openapi() -> dict:
        return app.openapi()
