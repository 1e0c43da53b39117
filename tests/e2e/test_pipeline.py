"""The whole pipeline as separate processes: ingest -> classify -> alerts -> a signed
webhook, faults injected into the running stack, and the Grafana dashboards
queried against a real Prometheus scraping it.

One stack serves every test here; each alerts on its own organization and
makes the traffic it checks (the dashboards test too), so they pass in any order.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.helpers.alerts_harness import early_in_window_sync
from tests.helpers.kafka_io import read_all, topic_size, wait_for
from tests.helpers.metric_names import dashboard_queries, exposition_sample_names, metric_names_used, render_expr
from tests.helpers.ingest_support import pushed_id

from .support import API_KEY, LOAD_ORG, ORGS, RULE, THRESHOLD, WINDOW_S, burst

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

WINDOW = timedelta(seconds=WINDOW_S)


def _push_burst(e2e, org: str, n: int = THRESHOLD) -> list[dict]:
    # Whole burst inside one rule window, so the count reaches the threshold there.
    early_in_window_sync(WINDOW, need=timedelta(seconds=12))
    posts = burst(org, n)
    r = e2e.push(posts)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * n
    return posts


def test_post_comes_out_classified_and_as_signed_webhook(e2e):
    org = ORGS[0]
    posts = _push_burst(e2e, org)
    ids = {pushed_id(p["id"], p["source"]) for p in posts}

    def classified():
        recs = [json.loads(v) for v in read_all(e2e.bootstrap, e2e.topics["posts_classified"], idle_ms=800)]
        return [r for r in recs if r["id"] in ids]

    recs = wait_for(lambda: (lambda rs: rs if {r["id"] for r in rs} == ids else None)(classified()),
                    timeout=120, what="the burst on posts.classified")
    for rec in recs:
        assert rec["orgs"] == [org]
        assert rec["sentiment"] in ("negative", "neutral", "positive")
        assert rec["lang"] == "sv"

    assert e2e.receiver.wait_for(lambda rx: e2e.alerts_for(org), timeout=120), \
        f"no alert for {org}; alerts log:\n{e2e.stack['alerts'].log_tail()}"
    rec = e2e.alerts_for(org)[0]
    # Checked here with the reference implementation, independently of the receiver.
    Webhook(e2e.secret).verify(rec.body, rec.headers)
    assert rec.verified is True
    doc = rec.json
    assert doc["rule"] == RULE and doc["organization"] == org and doc["count"] >= THRESHOLD
    assert rec.headers["webhook-id"]


def test_classify_sigkilled_mid_stream_loses_no_post(e2e):
    n = 2000
    tag = uuid.uuid4().hex[:8]
    posts = [{"id": f"load-{tag}-{i}", "source": "e2e",
              "text": f"Inlägg {i} om arbetsdagen på {LOAD_ORG}: möten, kaffe och ett och annat projekt ({tag})"}
             for i in range(n)]
    topic = e2e.topics["posts_classified"]
    before = topic_size(e2e.bootstrap, topic)
    for i in range(0, n, 500):
        r = e2e.push(posts[i:i + 500])
        assert r.status_code == 200 and r.json()["accepted"] == 500, r.text

    classify = e2e.stack["classify"]
    # Some, not all, classified: the kill lands in the middle of the stream.
    wait_for(lambda: topic_size(e2e.bootstrap, topic) - before >= 200, timeout=180, interval=0.1,
             what="classify to be part-way through the posts")
    done_at_kill = topic_size(e2e.bootstrap, topic) - before
    classify.kill()
    classify.start()  # before any assertion: the tests after this one share the stack
    classify.wait_ready()
    assert done_at_kill < n, "classify finished before it could be killed; the test proves nothing"

    want = {pushed_id(p["id"], p["source"]) for p in posts}
    deadline = time.monotonic() + 300
    while True:
        missing = want - e2e.classified_ids()
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, f"{len(missing)} of {n} posts never classified after the kill (e.g. {sorted(missing)[:3]})"


def test_alerts_killed_mid_delivery_delivers_each_alert_once_per_webhook_id(e2e):
    orgs = ORGS[1:3]
    rx = e2e.receiver
    rx.hold()
    try:
        early_in_window_sync(WINDOW, need=timedelta(seconds=12))
        for org in orgs:
            posts = burst(org)
            r = e2e.push(posts)
            assert r.status_code == 200 and r.json()["accepted"] == THRESHOLD, r.text
        # Both deliveries are in flight (held open by the receiver) when the worker dies.
        assert rx.wait_for(lambda _: all(e2e.alerts_for(o) for o in orgs), timeout=120), \
            f"deliveries never started; alerts log:\n{e2e.stack['alerts'].log_tail()}"
        e2e.stack["alerts"].kill()
    finally:
        rx.release()
    e2e.stack["alerts"].start()
    e2e.stack["alerts"].wait_ready()

    def delivered():
        return all(any(r.answered == 200 for r in e2e.alerts_for(o)) for o in orgs)

    assert rx.wait_for(lambda _: delivered(), timeout=120), \
        f"not every alert delivered after the restart; alerts log:\n{e2e.stack['alerts'].log_tail()}"
    for org in orgs:
        reqs = e2e.alerts_for(org)
        by_alert: dict[str, set[str]] = {}
        for r in reqs:
            by_alert.setdefault(r.json["alert_id"], set()).add(r.webhook_id)
        assert len(by_alert) == 1, f"{org}: more than one firing alert: {by_alert}"
        assert all(len(ids) == 1 for ids in by_alert.values()), f"{org}: several webhook-ids for one alert: {by_alert}"
        assert all(r.verified for r in reqs)


def test_receiver_down_then_back_gets_the_alert(e2e):
    org = ORGS[3]
    rx = e2e.receiver
    outage_s = 20  # the retry schedule in support.py outlasts it; the semantics are those of a minute
    rx.down()
    try:
        _push_burst(e2e, org)
        # This alert's own delivery record shows attempts failing while nothing listens.
        wait_for(lambda: _failed_attempts(_delivery_of(e2e, org)) > 0, timeout=60,
                 what=f"a failed delivery attempt of {org}'s alert while the receiver is down")
        time.sleep(outage_s)
        during = _delivery_of(e2e, org)
        assert during["status"] != "delivered" and _failed_attempts(during) >= 2, during
    finally:
        rx.up()
    back = time.time()
    assert rx.wait_for(lambda _: any(r.answered == 200 for r in e2e.alerts_for(org)), timeout=90), \
        f"alert for {org} not delivered after the receiver came back; log:\n{e2e.stack['alerts'].log_tail()}"
    assert len({r.webhook_id for r in e2e.alerts_for(org)}) == 1
    record = wait_for(lambda: (lambda d: d if d["status"] == "delivered" else None)(_delivery_of(e2e, org)),
                      timeout=30, what="the delivery record to say delivered")
    last = record["attempts"][-1]
    assert last["status_code"] == 200 and _failed_attempts(record) >= 2
    assert datetime.fromisoformat(last["started_at"]).timestamp() >= back - 1  # sent after the receiver came back


def _delivery_of(e2e, org: str) -> dict | None:
    """The delivery record of ``org``'s firing alert, read from the alerts API."""
    api = httpx.Client(base_url=e2e.stack["alerts"].url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    with api:
        events = api.get("/v1/alerts/history").json()["events"]
        firing = [e for e in events if e["org"] == org and e["state"] == "firing"]
        if not firing:
            return None
        deliveries = api.get(f"/v1/alerts/{firing[0]['alert_id']}/deliveries").json()["deliveries"]
    return next((d for d in deliveries if d["event_id"] == firing[0]["event_id"]), None)


def _failed_attempts(record: dict | None) -> int:
    """Attempts that reached no receiver (connection refused while it is down)."""
    return sum(1 for a in (record or {}).get("attempts", []) if a["status_code"] is None and a["outcome"] == "retry")


def test_dashboards_have_data_and_every_metric_name_is_exported(e2e, prometheus):
    # Fresh traffic for the rates: a post per organization, and an alert.
    _push_burst(e2e, ORGS[4])
    e2e.push([{"id": f"dash-{uuid.uuid4().hex[:8]}-{i}", "source": "e2e", "text": f"{o} anställer igen, kul!"}
              for i, o in enumerate(ORGS)])
    assert e2e.receiver.wait_for(lambda _: e2e.alerts_for(ORGS[4]), timeout=120)

    scraped: set[str] = set()
    for svc in e2e.stack.services.values():
        scraped |= exposition_sample_names(httpx.get(f"{svc.url}/metrics", timeout=5).text)
    missing = metric_names_used() - scraped
    assert not missing, f"dashboards/rules use metrics no service exports: {sorted(missing)}"

    queries = dashboard_queries()
    assert len(queries) > 20
    empty: dict[str, str] = {}

    def all_have_data() -> bool:
        empty.clear()
        for q in queries:
            expr = render_expr(q.expr)
            if not prometheus.query(expr):
                empty[f"{q.dashboard} / {q.panel} {q.ref}"] = expr
        return not empty

    # Recording rules need two scrapes of the new traffic and an evaluation after them.
    ok = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (ok := all_have_data()):
        time.sleep(2)
    assert ok, "dashboard queries without data:\n" + "\n".join(f"  {k}: {v}" for k, v in empty.items())
