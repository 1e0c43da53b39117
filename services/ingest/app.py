"""The ingest HTTP API: ``POST /v1/posts`` plus health, readiness and metrics
(``lyssna.common.health``); the process around it is ``service.IngestService``.

Answers of ``POST /v1/posts``:

- 200: the body was read; ``results`` has one entry per item, in order:
  ``{index, id, status: accepted|duplicate|rejected, reason?, ignored_fields?, retryable?}``.
  ``accepted`` means Kafka acknowledged the post. Unknown fields are ignored and
  listed in ``ignored_fields``.
- 400: not UTF-8 or not JSON (``position`` gives line, column and byte offset),
  or not a post/array of posts. Nothing was accepted.
- 401: missing or wrong API key.  403: the key lacks the ``ingest`` scope.
  413: body or batch too large.  415: media type.
- 503: Kafka or Redis unreachable; nothing was accepted (``results`` says so per
  item), or ``ingest.max_concurrent_requests`` are in flight; retry after
  ``Retry-After`` seconds.

Every error is an RFC 9457 problem (``application/problem+json``: ``type``,
``title``, ``status``, ``detail``, and the members named above).

The key, the body size and the concurrency cap are checked before the body is
read (``lyssna.common.http_guard``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Mapping

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from lyssna.common import problems
from lyssna.common.auth import FASTAPI_NO_PUBLIC_DOCS, INGEST, READ, add_protected_openapi, key_ring
from lyssna.common.config import ConfigError, Settings
from lyssna.common.health import health_router
from lyssna.common.problems import error_responses, problem
from lyssna.common.http_guard import GUARD_ERRORS, guard
from lyssna.common.pseudonyms import AuthorKeyError, author_pseudonymizer

from .dedup import Dedup
from .metrics import IngestMetrics
from .parsing import BodyError, TooManyItems, media_kind, parse_body
from .normalize import TimeBounds
from .pipeline import ACCEPTED, DUPLICATE, REJECTED, Pipeline, Unavailable
from .producer import PostProducer

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5

_POST_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "description": "the post's text (required)"},
        "id": {"type": ["string", "integer"], "description": "the source's id; derived from the content when missing"},
        "source": {"type": "string", "description": "where the post comes from; default 'http'"},
        "url": {"type": "string", "description": "http(s) link to the post"},
        "author": {"type": "string"},
        "created_at": {"type": ["string", "number"], "description": "ISO 8601 (UTC when no offset) or Unix seconds"},
        "lang": {"type": "string", "description": "language tag hint, e.g. 'sv'"},
        "metadata": {"type": "object"},
    },
    "additionalProperties": True,
}
_RESULT_SCHEMA = {
    "type": "object",
    "required": ["index", "id", "status"],
    "properties": {
        "index": {"type": "integer"},
        "id": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": [ACCEPTED, DUPLICATE, REJECTED]},
        "reason": {"type": "string"},
        "ignored_fields": {"type": "array", "items": {"type": "string"}},
        "retryable": {"type": "boolean"},
    },
}
# An item that is not a valid post is answered 'rejected' in its result, and the rest of
# the batch goes on: the API takes any object, or an array of anything, and the Post
# schema says what an item needs to be accepted. Only a body that is neither (or not
# JSON at all) is refused whole, with 400.
_ITEM = {"anyOf": [_POST_SCHEMA, {"description": "anything else: answered 'rejected' in its result"}]}


def _posts_openapi(max_batch_items: int) -> dict:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object", **_ITEM},
            {"type": "array", "items": _ITEM, "maxItems": max_batch_items}]}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON post per line"}},
    }}}


_POSTS_RESPONSES = {
    200: {"description": "every item has a result", "content": {"application/json": {"schema": {
        "type": "object", "required": ["accepted", "duplicate", "rejected", "results"],
        "properties": {"accepted": {"type": "integer"}, "duplicate": {"type": "integer"},
                       "rejected": {"type": "integer"}, "results": {"type": "array", "items": _RESULT_SCHEMA}}}}}},
    **error_responses(*GUARD_ERRORS, 415),
}
_POSTS_RESPONSES[400]["description"] = "not UTF-8, not JSON, or not an object or array; nothing accepted " \
                                       "(`position`: line, column and byte offset of the first problem)"
_POSTS_RESPONSES[413]["description"] = "body larger than ingest.max_body_bytes, or more than " \
                                       "ingest.max_batch_items posts (`max_batch_items`)"
_POSTS_RESPONSES[503]["description"] = "Kafka or Redis unreachable (`unavailable`, and `results` per item), " \
                                       "or too many requests in flight; nothing accepted, retry after Retry-After"


@dataclass
class IngestState:
    settings: Settings
    metrics: IngestMetrics
    redis: aioredis.Redis
    producer: PostProducer
    pipeline: Pipeline


def build_state(settings: Settings, metrics: IngestMetrics | None = None,
                delivery_timeout_s: float = 10.0, env: Mapping[str, str] | None = None) -> IngestState:
    """Raises :class:`ConfigError` before opening anything when pseudonymous authors
    (the default) have no key in ``env`` (default: the process environment)."""
    try:
        authors = author_pseudonymizer(settings.privacy.authors, os.environ if env is None else env)
    except AuthorKeyError as e:
        raise ConfigError(f"ingest cannot start: {e}") from None
    metrics = metrics or IngestMetrics()
    client = aioredis.Redis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=2)
    topics = settings.kafka.topics
    producer = PostProducer(settings.kafka.bootstrap_servers, topics=[topics.posts_raw, topics.deadletter],
                            topic_layout=settings.kafka.topic_layout(), delivery_timeout_s=delivery_timeout_s,
                            on_latency=metrics.produce_latency.observe)
    dedup = Dedup(client, settings.redis.key_prefix, int(settings.ingest.dedup_ttl.total_seconds()),
                  reservation_ttl_s=int(delivery_timeout_s * 3 + 30))
    pipeline = Pipeline(dedup=dedup, producer=producer, metrics=metrics, topic=topics.posts_raw,
                        deadletter_topic=topics.deadletter, max_text_chars=settings.ingest.max_text_chars,
                        time_bounds=TimeBounds(settings.ingest.max_clock_skew, settings.ingest.max_post_age),
                        authors=authors)
    return IngestState(settings, metrics, client, producer, pipeline)


def _error(status: int, detail: str, **extra) -> Response:
    return problem(status, detail, headers={"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None,
                   **extra)


def required_scope(method: str, path: str) -> str:
    """The scope a request to the ingest API needs (the OpenAPI document is for readers)."""
    return INGEST if path == "/v1/posts" else READ


def create_app(state: IngestState) -> FastAPI:
    """The ingest HTTP API over the service's state; :class:`~.service.IngestService`
    owns the state's clients and the connectors, and serves this app."""
    settings = state.settings
    keys = key_ring(settings.api_keys, settings.scoped_api_keys)

    app = FastAPI(title="Lyssna ingest", version="1", **FASTAPI_NO_PUBLIC_DOCS,
                  description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    app.state.ingest = state

    guard(app, settings.ingest, keys=keys, required_scope=required_scope, service="ingest")
    problems.install(app)
    add_protected_openapi(app)

    @app.post("/v1/posts", openapi_extra=_posts_openapi(settings.ingest.max_batch_items),
              responses=_POSTS_RESPONSES, summary="Ingest one post, a JSON array of posts, or NDJSON")
    async def post_posts(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        if media_kind(content_type) is None:
            return _error(415, f"unsupported media type {content_type!r}; send application/json "
                               f"or application/x-ndjson")
        limits = settings.ingest
        try:
            body = await request.body()  # the guard stops it at max_body_bytes with 413
        except ClientDisconnect:
            return _error(400, "the client went away before sending the whole body")
        try:
            items = parse_body(body, content_type, limits.max_batch_items)
        except TooManyItems as e:
            return _error(413, str(e), max_batch_items=e.limit)
        except BodyError as e:
            return _error(400, str(e), position=e.position)
        try:
            results = await state.pipeline.ingest_pushed(items, channel="http")
        except Unavailable as e:
            log.warning("refusing posts: dependency down", extra={"dependency": e.dependency, "error": e.detail})
            return _error(503, f"{e.dependency} is unavailable; nothing was accepted, retry later",
                          unavailable=e.dependency, results=[r.to_dict() for r in e.results])
        counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0}
        for r in results:
            counts[r.status] += 1
        return JSONResponse({**counts, "results": [r.to_dict() for r in results]})

    app.include_router(health_router(lambda: readiness_checks(state), state.metrics.render))
    return app


async def readiness_checks(state: IngestState) -> dict[str, str]:
    """Kafka and Redis reachable; why one is not goes to the log, not to /readyz."""
    checks = {"kafka": "ok", "redis": "ok"}
    try:
        await asyncio.wait_for(state.redis.ping(), 3)
    except Exception as e:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = "down"
        log.warning("not ready: redis down", extra={"error": type(e).__name__})
    try:
        problem_ = await asyncio.wait_for(state.producer.check(), 8)
    except TimeoutError:
        problem_ = "no answer within 8 s"
    if problem_:
        checks["kafka"] = "down"
        log.warning("not ready: kafka down", extra={"error": problem_})
    return checks
