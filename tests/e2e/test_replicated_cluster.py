"""Scale-out, end to end: two replicas each of ingest, classify and alerts on a
three-broker Kafka cluster, under steady load with six organizations breaching
count rules, while one broker, one classify replica and one alerts replica get
``kill -9`` mid-run.

How the run is designed so that each promise of the scaling model is checked
exactly, without any timing threshold:

- Every post names one watched organization (``classify.scope: mentions`` would
  count and drop a post without one) and each organization gets exactly
  ``PER_ORG`` distinct posts; a post the cluster refused during the broker kill
  is pushed again with the same id until ingest says ``accepted`` or
  ``duplicate``, so the distinct posts per organization are known in advance.
- The rules' window is about 6 h (1 min buckets), chosen with room for the whole
  run left in the current one: the condition holds for the whole run, so any
  ``resolved`` event is wrong (the bug this replaced: a replica
  without the counts resolved the other's alert).
- Rules ``early`` (5), ``half`` and ``exact`` (``PER_ORG``) fire before, around
  and after the kills; ``over`` (``PER_ORG + 1``) can only fire if some post was
  counted twice in the window (a classify replica killed before committing
  reclassifies its last posts, an alerts replica's partitions are read again
  by the survivor), and ``exact``'s count must be ``PER_ORG`` exactly.
- Every alert state change is one event (one event id) on the outbox topic and
  reaches the receiver under exactly that one ``webhook-id``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import httpx
import pytest
import yaml

from lyssna.local.cleanup import drop_namespace
from lyssna.local.receiver import WebhookReceiver
from lyssna.local.stack import new_webhook_secret
from tests.helpers.alerts_harness import read_events, window_with_room
from tests.helpers.kafka_io import ServiceProcess, free_port, read_all, read_topic, wait_for
from tests.helpers.replicas import alerts_handover, orgs_covering, wait_alerts_split

from .support import API_KEY, SECRET_ENV, _payload

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PARTITIONS = 3        # kafka.partitions' default: posts, mentions and changelogs
PER_ORG = 180         # distinct posts each organization gets over the run
BATCH = 12            # posts per request
RATE = 24             # posts per second, both ingest replicas together (a 2-core machine)
# The whole run (start-up, load, kills, checks) within one window of the rules.
RUN_NEEDS = timedelta(minutes=25)
FIRING_RULES = {"early": 5, "half": PER_ORG // 2, "exact": PER_ORG}
OVERCOUNT_RULE = "over"

_TEXTS = [
    "Alla på {org} är så trötta, lönen är usel och ledningen lyssnar inte ({n})",
    "Working at {org} has been exhausting lately, management ignores every complaint ({n})",
    "Stemningen hos {org} er helt i bunn etter omorganiseringen ({n})",
    "Die Stimmung bei {org} ist seit den Entlassungen im Keller ({n})",
]


def _org_name(i: int) -> str:
    # Letters only (K..Z): digits and a trailing "AB" read differently to the mention matcher.
    return f"Skalbolag{chr(75 + i // 16 % 16)}{chr(75 + i % 16)}"


def _config(path, orgs: list[str], receiver_url: str, window: str):
    rules = [{"name": name, "org": "*", "window": window, "cooldown": "1h",
              "condition": {"type": "count", "threshold": threshold}, "notify": ["receiver"]}
             for name, threshold in {**FIRING_RULES, OVERCOUNT_RULE: PER_ORG + 1}.items()]
    doc = {
        # 1 min buckets keep a 6 h window's sums short; evaluation twice a second.
        "alerts": {"bucket": "1m", "evaluate_interval": "500ms", "retry_schedule": ["0s", "1s", "2s", "4s", "8s"],
                   "delivery_lease": "6s", "delivery_timeout": "3s", "samples_per_alert": 0},
        "classify": {"batch_within": "50ms"},
        "organizations": [{"name": o, "aliases": []} for o in orgs],
        "rules": rules,
        "webhooks": [{"name": "receiver", "url": receiver_url, "format": "json", "secret_env": SECRET_ENV,
                      "allow_private_network": True, "timeout": "3s"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


class Pump:
    """Pushes the planned posts to the ingest replicas in turn at a steady rate;
    a post not taken (the cluster refused it during the broker kill, a replica
    was busy) is pushed again with the same id until it is ``accepted`` or a
    ``duplicate`` (it had reached Kafka), so every planned post ends up on the
    topic, and ``taken`` maps each client id to the id ingest gave it."""

    def __init__(self, urls: list[str], batches: list[list[dict]]):
        self.urls, self.batches = urls, batches
        self.sent = 0                      # batches fully taken so far
        self.taken: dict[str, str] = {}
        self.refusals = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()

    def start(self) -> "Pump":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def _run(self) -> None:
        try:
            interval = BATCH / RATE
            start = time.monotonic()
            with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_KEY}",
                                                   "Content-Type": "application/x-ndjson"}) as client:
                for i, batch in enumerate(self.batches):
                    delay = start + i * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self._push(client, i, batch)
                    self.sent = i + 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _push(self, client: httpx.Client, i: int, batch: list[dict]) -> None:
        left, attempt = list(batch), 0
        deadline = time.monotonic() + 180
        while left:
            if self._stop.is_set() or time.monotonic() > deadline:
                raise RuntimeError(f"batch {i}: {len(left)} posts never taken")
            url = self.urls[(i + attempt) % len(self.urls)]  # a retry goes to the other replica
            attempt += 1
            body = "\n".join(json.dumps(p, ensure_ascii=False) for p in left).encode()
            try:
                r = client.post(f"{url}/v1/posts", content=body)
                results = (r.json().get("results") or []) if r.status_code in (200, 207, 503) else []
            except (httpx.HTTPError, ValueError):
                results = []
            retry = []
            by_index = {x.get("index"): x for x in results}
            for k, post in enumerate(left):
                x = by_index.get(k)
                if x is not None and x.get("status") in ("accepted", "duplicate"):
                    self.taken[post["id"]] = x["id"]
                else:
                    retry.append(post)
            if retry:
                self.refusals += 1
                time.sleep(0.5)
            left = retry


def _where_counts_stop(bootstrap: str, topics: dict[str, str], alerts_app: str, org_of: dict[str, str],
                       taken: dict[str, str]) -> str:
    """Distinct posts per organization at each hop (classified, alerts' mentions
    topic), to tell where a post went missing or was doubled."""
    want: dict[str, int] = defaultdict(int)
    for client_id, org in org_of.items():
        if client_id in taken:
            want[org] += 1
    lines = [f"taken by ingest: {dict(want)}"]
    for name, topic in (("classified", topics["posts_classified"]), ("mentions", f"{alerts_app}-mentions")):
        per_org: dict[str, set[str]] = defaultdict(set)
        for value in read_all(bootstrap, topic):
            doc = json.loads(value)
            for org in doc.get("orgs") or ["(none)"]:
                per_org[org].add(doc["id"])
        lines.append(f"{name}: {({org: len(ids) for org, ids in sorted(per_org.items())})}")
    # What a new owner recovers from the counts changelog: per organization, the posts
    # its buckets count and the posts it knows as seen (a bucket's last post included).
    table: dict[str, object] = {}
    for key, value in read_topic(bootstrap, f"{alerts_app}-counts-changelog"):
        name = json.loads(key)
        if value is None:
            table.pop(name, None)
        else:
            table[name] = json.loads(value)
    counted: dict[str, int] = defaultdict(int)
    seen: dict[str, set[str]] = defaultdict(set)
    for name, value in table.items():
        bucket, sep, h = name.rpartition("#")
        if sep and "|" in bucket:
            seen[bucket.rpartition("|")[0]].add(h)
        elif "@" not in name and isinstance(value, dict):
            org = name.rpartition("|")[0]
            counted[org] += sum(n for cell, n in value.get("s", {}).items()
                                if cell.split("|")[0] == "*" and cell.split("|")[2] == "*")
            if value.get("last"):
                seen[org].add(value["last"]["p"])
    lines.append(f"counts changelog (posts counted, posts seen): "
                 f"{({org: (counted[org], len(seen[org])) for org in sorted(set(counted) | set(seen))})}")
    return "\n".join(lines)


def test_replicas_on_three_brokers_survive_kill_9_of_a_broker_a_classify_and_an_alerts_replica(
        kafka_cluster, infra, tmp_path):
    uid = uuid.uuid4().hex[:10]
    bootstrap = kafka_cluster.bootstrap_servers
    orgs = [o for names in orgs_covering(PARTITIONS, 2, _org_name).values() for o in names]
    topics = {k: f"e2e.{uid}.{k.replace('_', '.')}" for k in
              ("posts_raw", "posts_classified", "alerts_events", "deadletter")}
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret).start()
    # About 6 h, and chosen so that the run fits in the current window instead of
    # waiting for the next one: the condition then holds from the first breach on.
    config = _config(tmp_path / "lyssna.yaml", orgs, receiver.url, window_with_room(RUN_NEEDS))
    shared = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": infra.redis_url, "LYSSNA_REDIS_PREFIX": f"e2e:{uid}:",
        "LYSSNA_API_KEY": API_KEY, SECRET_ENV: secret,
        "LYSSNA_CLASSIFY_APP_ID": f"e2e-{uid}-classify", "LYSSNA_ALERTS_APP_ID": f"e2e-{uid}-alerts",
        **{f"LYSSNA_TOPIC_{k.upper()}": v for k, v in topics.items()},
    }
    procs: dict[str, list[ServiceProcess]] = {}
    for svc in ("ingest", "classify", "alerts"):
        procs[svc] = []
        for _ in range(2):
            port = free_port()
            procs[svc].append(ServiceProcess(svc, {**shared, f"LYSSNA_{svc.upper()}_PORT": str(port)}, port=port,
                                             log_dir=tmp_path, config=config))
    everyone = [p for ps in procs.values() for p in ps]
    # Each organization's posts spread over the run, in turn, so every rule's
    # threshold is crossed at its own point of the run (early, during the kills, at the end).
    plan = [{"id": f"rep-{uid}-{n}", "source": "e2e", "text": _TEXTS[n % len(_TEXTS)].format(org=orgs[n % len(orgs)],
                                                                                              n=n)}
            for n in range(PER_ORG * len(orgs))]
    org_of = {p["id"]: orgs[n % len(orgs)] for n, p in enumerate(plan)}
    pump = Pump([f"http://127.0.0.1:{p.port}" for p in procs["ingest"]],
                [plan[i:i + BATCH] for i in range(0, len(plan), BATCH)])
    broker_killed = False
    try:
        for p in everyone:
            p.start()
        for p in everyone:
            p.wait_ready(timeout=300)
        wait_alerts_split(procs["alerts"], PARTITIONS)

        pump.start()
        n_batches = len(pump.batches)

        def reached(share: float) -> bool:
            if pump.error:
                raise pump.error
            return pump.sent >= share * n_batches
        wait_for(lambda: reached(1 / 6), timeout=180, what="a sixth of the load pushed")
        kafka_cluster.kill(2)
        broker_killed = True
        wait_for(lambda: reached(2 / 6), timeout=180, what="a third of the load pushed")
        procs["classify"][0].kill()
        wait_for(lambda: reached(3 / 6), timeout=180, what="half the load pushed")
        handover = alerts_handover(procs["alerts"][0], procs["alerts"][1], PARTITIONS)
        print(f"\nalerts handover after kill -9 under load: {handover:.1f}s")
        wait_for(lambda: reached(1), timeout=300, what="every post pushed")
        pump.stop()
        assert pump.error is None, pump.error
        assert set(pump.taken) == set(org_of), "every planned post taken by ingest"

        # Every accepted post classified, by whichever classify replica was alive.
        accepted = set(pump.taken.values())

        def unclassified() -> set[str]:
            return accepted - {json.loads(v)["id"] for v in read_all(bootstrap, topics["posts_classified"])}
        wait_for(lambda: not unclassified(), timeout=240, interval=2, what="every accepted post classified")
        records = len(read_all(bootstrap, topics["posts_classified"]))

        # Every breach fired and delivered.
        expected = {(rule, org) for rule in FIRING_RULES for org in orgs}

        def delivered() -> set[tuple[str, str]]:
            resolved = [_payload(q) for q in receiver.requests if _payload(q).get("type") == "alert.resolved"]
            # Final: the window holds every condition, so no resolve can be right (nor undone).
            assert not resolved, f"resolved while the window holds the condition: {resolved[:3]}"
            return {(_payload(q).get("rule"), _payload(q).get("organization")) for q in receiver.ok
                    if _payload(q).get("type") == "alert.firing"}
        try:
            wait_for(lambda: delivered() >= expected, timeout=240, interval=1, what="every breach delivered")
        except AssertionError as e:
            raise AssertionError(f"{e}\nmissing: {sorted(expected - delivered())}\n"
                                 f"{_where_counts_stop(bootstrap, topics, f'e2e-{uid}-alerts', org_of, pump.taken)}")
        # The alerts keep being judged (twice a second) over the same counts: an
        # overcount or a resolve would show now.
        time.sleep(6)

        events = list({e.event_id: e for e in read_events(bootstrap, topics["alerts_events"])}.values())
        changes = sorted((e.rule, e.org, e.state.value) for e in events)
        # One firing per (rule, org), never resolved (the window holds), never `over`.
        assert changes == sorted((rule, org, "firing") for rule, org in expected), changes
        for e in events:
            if e.rule == "exact":
                assert e.count == PER_ORG, (e.org, e.count)  # each distinct post counted once
            else:
                assert FIRING_RULES[e.rule] <= e.count <= PER_ORG, (e.rule, e.org, e.count)
        # Exactly one webhook-id per state change, and it is the event's id.
        ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        for q in receiver.requests:
            ids[(_payload(q).get("alert_id"), _payload(q).get("type"))].add(q.webhook_id)
        assert {k: v for k, v in ids.items() if len(v) != 1} == {}
        assert {q.webhook_id for q in receiver.ok} == {e.event_id for e in events}
        assert not [q for q in receiver.requests if _payload(q).get("type") != "alert.firing"]
        # The survivor holds every alert active, with the ids that fired.
        survivor = procs["alerts"][1]
        active = httpx.get(f"http://127.0.0.1:{survivor.port}/v1/alerts",
                           headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).json()["alerts"]
        assert sorted((a["rule"], a["org"], a["alert_id"]) for a in active) == \
            sorted((e.rule, e.org, e.alert_id) for e in events)
        # Records beyond the distinct posts are posts classified twice (a replica killed
        # before committing): the ones alerts must not count twice.
        print(f"posts: {len(accepted)}, classified records: {records}, pushes retried: {pump.refusals}")
    finally:
        pump.stop()
        for p in everyone:
            p.stop(timeout=15)
        receiver.stop()
        if broker_killed:
            kafka_cluster.up()  # the session's cluster whole again for the next test
        try:
            drop_namespace(bootstrap, infra.redis_url, (f"e2e.{uid}.", f"e2e-{uid}-"), f"e2e:{uid}:",
                           client_id="e2e-cleanup")
        except Exception:  # noqa: BLE001 - leftovers in a private cluster are harmless
            pass
