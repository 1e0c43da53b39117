"""Hostile posts through the running stack: one post must never stop classification.

The worst post of the adversarial corpus (bench/adversarial_posts.py: the
issue's "Acme." * 4000, built around a watched name) once held the classify
worker at 100% CPU for minutes, so a normal post sent after it was never
classified. Here it goes in through ``POST /v1/posts``, a normal post after it,
and both must come out: the normal one classified, the hostile one classified
or dead-lettered with a reason. Lone surrogates, which JSON can carry and UTF-8
cannot, are refused with a reason at the API and, when a producer other than
ingest puts them on the topic, dead-lettered by classify.

The stack runs ingest and classify only (alerts play no part) and is this
module's own, so the tests do not depend on what other modules sent.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from bench.adversarial_posts import WORST, by_name
from tests.helpers.kafka_io import produce, read_topic, wait_for

from .support import API_KEY, ORGS, start_stack, stop_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ORG = ORGS[0]


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    e = start_stack(tmp_path_factory.mktemp("hostile-stack"), bootstrap=infra.bootstrap_servers,
                    redis_url=infra.redis_url, services=("ingest", "classify"))
    yield e
    stop_stack(e)


def _classified(stack, ids: set[str]) -> dict[str, dict]:
    recs = (json.loads(v) for _, v in read_topic(stack.bootstrap, stack.topics["posts_classified"]))
    return {r["id"]: r for r in recs if r["id"] in ids}


def _deadlettered(stack, ids: set[str]) -> dict[str, dict]:
    """Dead letters of ``ids``, by post id (the record key, else the id in the payload)."""
    out = {}
    for key, value in read_topic(stack.bootstrap, stack.topics["deadletter"]):
        doc = json.loads(value)
        post_id = key.decode("utf-8", "replace") if key else None
        if post_id not in ids:
            try:
                post_id = json.loads(doc["payload"]).get("id")
            except (ValueError, AttributeError):
                continue
        if post_id in ids:
            out[post_id] = doc
    return out


def _accepted(stack, post: dict) -> str:
    """Send one post; the id it has on the topics (ingest namespaces clients' ids)."""
    r = stack.push([post])
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "accepted", result
    return result["id"]


def _normal_post(tag: str) -> dict:
    return {"id": f"normal-{tag}", "source": "e2e",
            "text": f"Första veckan på {ORG} och alla kollegor har varit hjälpsamma ({tag})"}


def test_worst_post_then_a_normal_post_both_come_out(stack):
    tag = uuid.uuid4().hex[:8]
    hostile = {"id": f"hostile-{tag}", "source": "e2e", "text": by_name(WORST, ORG).text}
    normal = _normal_post(tag)
    # Two requests, in this order: the normal post queues behind the hostile one.
    hostile_id, normal_id = (_accepted(stack, post) for post in (hostile, normal))

    got = wait_for(lambda: _classified(stack, {normal_id}), timeout=120,
                   what="the normal post, sent after the hostile one, on posts.classified")
    assert got[normal_id]["orgs"] == [ORG]

    ids = {hostile_id}
    outcome = wait_for(lambda: _classified(stack, ids) or _deadlettered(stack, ids), timeout=120,
                       what="the hostile post classified or dead-lettered")
    rec = outcome[hostile_id]
    if rec.get("schema") == "lyssna.classified.v1":
        assert rec["orgs"] == [ORG] and rec["text"] == hostile["text"]
    else:
        assert rec["reason"] and hostile["text"][:50] not in rec["reason"], rec["reason"][:300]


def test_lone_surrogate_is_refused_with_a_reason_and_the_stream_goes_on(stack):
    tag = uuid.uuid4().hex[:8]
    bad = {"id": f"surrogate-{tag}", "source": "e2e", "text": f"Hej \ud800 {ORG} ({tag})"}
    normal = _normal_post(tag)
    # JSON's "\ud800" escape is how a client sends one: json.dumps writes it so.
    body = "\n".join(json.dumps(p) for p in (bad, normal)).encode("ascii")
    r = httpx.post(f"{stack.ingest_url}/v1/posts", content=body, timeout=60,
                   headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    rejected, accepted = r.json()["results"]
    assert rejected["status"] == "rejected" and "surrogate" in rejected["reason"], rejected
    assert accepted["status"] == "accepted", accepted
    normal_id = accepted["id"]

    # The same post put on the topic by another producer, past ingest's check.
    raw_id = f"raw-surrogate-{tag}"
    raw = (b'{"schema":"lyssna.post.v1","id":"%s","source":"e2e","text":"Hej \\ud800 %s"}'
           % (raw_id.encode(), ORG.encode()))
    produce(stack.bootstrap, stack.topics["posts_raw"], [(raw_id.encode(), raw)])
    later_id = _accepted(stack, {**_normal_post(tag), "id": f"after-raw-{tag}"})

    dead = wait_for(lambda: _deadlettered(stack, {raw_id}), timeout=120,
                    what="the raw record with a lone surrogate on the dead-letter topic")
    assert dead[raw_id]["reason"], dead
    wait_for(lambda: _classified(stack, {normal_id, later_id}).keys() == {normal_id, later_id},
             timeout=120, what="the normal posts around the refused ones on posts.classified")
