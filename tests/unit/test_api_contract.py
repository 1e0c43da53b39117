"""The pieces that keep the APIs and their OpenAPI documents in agreement: the one
problem shape for every error, durations typed as the strings they are, and
query parameters that take what the document says and nothing else."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel

from lyssna.alerts.api.params import QUERY_INT, DateTime, QueryBool
from lyssna.common import problems
from lyssna.common.durations import DURATION_PATTERN, parse_duration
from tests.helpers.problems import problem


class Thing(BaseModel):
    name: str


def app_with_problems() -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/things")
    async def list_things(limit: Annotated[int, Query(ge=1), QUERY_INT] = 10,
                          active: Annotated[QueryBool, Query()] = False,
                          before: Annotated[DateTime, Query()] = None) -> dict:
        return {"limit": limit, "active": active, "before": before and before.isoformat()}

    @app.post("/things")
    async def add_thing(thing: Thing) -> Thing:
        return thing

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("Kvarnby Bank svarar aldrig")  # stands for a post's text in a message

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://t")


async def test_every_error_is_a_problem_and_never_repeats_the_input():
    async with client(app_with_problems()) as c:
        body = problem(await c.post("/things", json={"name": ["secret-ish"]}), 422)
        assert body["errors"] == [{"type": "string_type", "loc": ["body", "name"],
                                   "msg": "Input should be a valid string"}]
        assert body["detail"] == "body.name: Input should be a valid string"
        assert "secret-ish" not in str(body)

        assert problem(await c.get("/nowhere"), 404)["detail"] == "Not Found"

        crashed = problem(await c.get("/boom"), 500)
        assert "Kvarnby" not in str(crashed)


async def test_405_names_every_method_of_the_path():
    # GET and POST /things are two routes; Starlette's own 405 names only the first one's.
    async with client(app_with_problems()) as c:
        r = await c.delete("/things")
        problem(r, 405)
        assert r.headers["allow"] == "GET, POST"


@pytest.mark.parametrize("query", ["limit=1.0", "limit=1e2", "limit= 5", "limit=0", "active=yes", "active=1",
                                   "before=1700000000", "before=2026-01-01T00:00:00", "before=2026-01-01"])
async def test_queries_the_document_does_not_allow_are_refused(query):
    async with client(app_with_problems()) as c:
        assert problem(await c.get(f"/things?{query}"), 422)["errors"][0]["loc"][0] == "query"


async def test_queries_the_document_allows_are_taken():
    async with client(app_with_problems()) as c:
        r = await c.get("/things?limit=5&active=true&before=2026-01-31T12:00:00%2B01:00")
    assert r.json() == {"limit": 5, "active": True, "before": "2026-01-31T12:00:00+01:00"}


def test_openapi_documents_problems_instead_of_fastapis_validation_error():
    doc = app_with_problems().openapi()
    assert {"Problem", "ValidationProblem"} <= set(doc["components"]["schemas"])
    assert "HTTPValidationError" not in str(doc)
    post = doc["paths"]["/things"]["post"]["responses"]["422"]
    assert post["content"] == {"application/problem+json": {"schema": {
        "$ref": "#/components/schemas/ValidationProblem"}}}


@pytest.mark.parametrize("text", ["30s", "5m", "1h30m", "7d", "200ms", "1.5h", "2w", "0s", "1m1s1ms",
                                  "20S", " 30s", "30s ", "1h 30m", "\u0663s", "1.s", ".5s", "s", "", "5", "1h-",
                                  "30sec", "1H", "30s\n"])
def test_the_documented_duration_pattern_is_exactly_what_is_parsed(text):
    documented = re.fullmatch(DURATION_PATTERN, text) is not None  # $ would also match before a final \n
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert documented == parsed, text


@pytest.mark.parametrize("value", ["99999999999999999w", 1e300])
def test_a_duration_too_long_to_hold_is_a_value_error_not_a_crash(value):
    with pytest.raises(ValueError, match="longer than any"):
        parse_duration(value)
