"""One error body for every Lyssna API: RFC 9457 problem details.

Every error answer, whoever gives it (the guard in front of the app, a route,
FastAPI's request validation, Starlette's 404/405), is ``application/problem+json``::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "no rule named 'x'"}

``detail`` is always one human-readable string. Extension members carry what a
client acts on: ``errors`` (what is wrong and where) on a 422, ``position`` on
ingest's 400, ``max_batch_items`` on its 413. A client needs one parser, and a
client generated from the OpenAPI document gets the one ``Problem`` schema that
:func:`error_responses` puts on every error status a route can answer.

No answer repeats the rejected input back: a 422 says where and what, never the
value (it may be a post's text or a secret pasted in the wrong field).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
ABOUT_BLANK = "about:blank"  # RFC 9457 §4.2.1: the status code says all there is

_REF = "#/components/schemas/"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; extension members may be added",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "'about:blank': the status says what kind of problem"},
        "title": {"type": "string", "description": "the status code's phrase"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong, for a person"},
    },
    "additionalProperties": True,
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "a Problem whose `errors` say what in the request is wrong and where",
    "allOf": [{"$ref": _REF + "Problem"}],
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "errors": {"type": "array", "description": "present when the request does not match the schema; "
                                                   "a request the schema admits but the configuration "
                                                   "cannot run has the reason in `detail` only", "items": {
            "type": "object", "required": ["type", "loc", "msg"],
            "properties": {"type": {"type": "string"},
                           "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                           "msg": {"type": "string"}}}},
    },
}

# What each status means on a Lyssna API, for the OpenAPI document.
_WHY = {
    400: "the request cannot be read",
    401: "missing or unknown API key",
    403: "the key lacks the scope this operation needs",
    404: "no such resource",
    409: "the request conflicts with the resource's state",
    413: "the body is larger than the service accepts",
    415: "unsupported media type",
    422: "the request does not match the schema, or names what the configuration lacks",
    503: "too many requests in flight, or a dependency is down; retry after Retry-After seconds",
}


def problem_body(status: int, detail: str, **extensions: Any) -> dict[str, Any]:
    """The problem document for ``status``; ``extensions`` cannot replace the standard members."""
    return {**extensions, "type": ABOUT_BLANK, "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extensions: Any) -> ProblemResponse:
    return ProblemResponse(problem_body(status, detail, **extensions), status_code=status, headers=headers)


def validation_errors(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors without ``input`` and ``ctx``: where and what, never the rejected value."""
    return [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """One line a person reads: the first problem and how many more there are."""
    if not errors:
        return "the request does not match the schema"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more, see errors)" if len(errors) > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes. Starlette's 405 names those of the first
    route with the path only, and GET /v1/rules and POST /v1/rules are two routes."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code < 400:  # a redirect or no-content raised as an exception has no problem body
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem(exc.status_code, detail, headers=headers or None)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    errors = validation_errors(exc.errors())
    return problem(422, validation_detail(errors), errors=errors)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Logged with its type only: the message may quote a post or a header.
    log.error("unhandled error", extra={"path": request.url.path, "error": type(exc).__name__})
    return problem(500, "internal error; the service log has the details")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status documented with the Problem body."""
    return {s: {"description": _WHY.get(s, HTTPStatus(s).phrase),
                "content": {PROBLEM_JSON: {"schema": {"$ref": _REF + (
                    "ValidationProblem" if s == 422 else "Problem")}}}} for s in statuses}


def _document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the Problem schemas and replace FastAPI's own 422 body (an array ``detail``,
    which these APIs never send) with ValidationProblem."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = PROBLEM_SCHEMA
    components["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                responses["422"] = error_responses(422)[422]
    return schema


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem, and say so in its OpenAPI document."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _server_error)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
