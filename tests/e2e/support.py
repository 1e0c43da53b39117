"""End-to-end support: the stack exactly as `make up` runs it (services/local/stack.py),
wired to a test's own ports, topics, app ids and Redis prefix, a real Prometheus
scraping it, and helpers to push posts and watch what comes out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import httpx
import yaml

from lyssna.local.cleanup import drop_namespace
from lyssna.local.receiver import WebhookReceiver
from lyssna.local.stack import Stack, new_webhook_secret
from tests.helpers.kafka_io import ROOT, free_port, read_all, wait_for

API_KEY = "e2e-key"
SECRET_ENV = "LYSSNA_E2E_WEBHOOK_SECRET"
# Invented names: each test alerts on its own organization, so one shared
# stack (and its per-organization cooldown) serves every test.
ORGS = ["Alfakraft", "Betaverken", "Gammaborg", "Deltabanken", "Epsilonhem", "Zetarobotik",
        "Etaenergi", "Thetabygg"]
# Named by the load posts of the classify kill test: each goes through the
# transformer, so the load lasts long enough for the kill to land mid-stream
# (posts naming no one are skipped in a fraction of a millisecond each).
LOAD_ORG = "Kappakonsult"
RULE = "e2e-burst"
THRESHOLD = 5
WINDOW_S = 20
# Long enough to outlast the receiver outage in the test (about 47 s of attempts).
RETRY_SCHEDULE = ["0s", "1s", "2s", "4s", "8s", "8s", "8s", "8s", "8s"]


def free_port_pair() -> int:
    """A port whose successor is free too (Kafka's controller listens on port + 1)."""
    import socket

    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def write_config(path: Path, *, receiver_url: str, feed: Path) -> Path:
    doc = {
        "alerts": {"bucket": "1s", "evaluate_interval": "500ms", "retry_schedule": RETRY_SCHEDULE,
                   "delivery_lease": "6s", "delivery_timeout": "3s"},
        # forward: posts without a watched organization still reach posts.classified
        # (with skipped set), so "every post classified" holds for the load posts;
        # the default, drop, is tested in tests/integration/test_classify_stream.py.
        "classify": {"batch_within": "50ms", "irrelevant": "forward"},
        "organizations": [{"name": o, "aliases": []} for o in [*ORGS, LOAD_ORG]],
        "sources": [{"type": "file", "name": "e2e-feed", "path": str(feed)}],
        "rules": [{"name": RULE, "org": "*", "window": f"{WINDOW_S}s", "cooldown": "1h",
                   "condition": {"type": "count", "threshold": THRESHOLD}, "notify": ["receiver"]}],
        "webhooks": [{"name": "receiver", "url": receiver_url, "format": "json", "secret_env": SECRET_ENV,
                      "allow_private_network": True, "timeout": "3s"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def write_feed(path: Path, uid: str) -> Path:
    """A few posts for the file connector, so the connector metrics have samples."""
    lines = [json.dumps({"id": f"feed-{uid}-{i}", "source": "file",
                         "text": f"Fredagsfika på {ORGS[-1]} idag, trevliga kollegor ({i})"}, ensure_ascii=False)
             for i in range(3)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class E2EStack:
    stack: Stack
    receiver: WebhookReceiver
    secret: str
    uid: str
    bootstrap: str
    redis_url: str
    topics: dict[str, str] = field(default_factory=dict)

    @property
    def ingest_url(self) -> str:
        return self.stack["ingest"].url

    def push(self, posts: list[dict], timeout: float = 60) -> httpx.Response:
        body = "\n".join(json.dumps(p, ensure_ascii=False) for p in posts).encode()
        return httpx.post(f"{self.ingest_url}/v1/posts", content=body, timeout=timeout,
                          headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-ndjson"})

    def classified_ids(self) -> set[str]:
        return {json.loads(v)["id"] for v in read_all(self.bootstrap, self.topics["posts_classified"], idle_ms=1000)}

    def alerts_for(self, org: str, kind: str = "alert.firing") -> list:
        return [r for r in self.receiver.requests if _payload(r).get("organization") == org
                and _payload(r).get("type") == kind]


def _payload(rec) -> dict:
    try:
        doc = rec.json
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def burst(org: str, n: int = THRESHOLD, tag: str | None = None) -> list[dict]:
    tag = tag or uuid.uuid4().hex[:8]
    return [{"id": f"burst-{tag}-{i}", "source": "e2e",
             "url": f"https://social.example/{tag}/{i}",
             "text": f"Alla på {org} är så trötta, lönen är usel och ledningen lyssnar inte ({tag} {i})"}
            for i in range(n)]


def start_stack(tmp: Path, *, bootstrap: str, redis_url: str, name: str | None = None,
                services: tuple[str, ...] = ("ingest", "classify", "alerts")) -> E2EStack:
    """A fresh stack: own ports, topics, app ids, Redis prefix, receiver and secret."""
    uid = uuid.uuid4().hex[:10]
    tmp.mkdir(parents=True, exist_ok=True)
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret).start()
    config = write_config(tmp / "lyssna.yaml", receiver_url=receiver.url, feed=write_feed(tmp / "feed.jsonl", uid))
    topics = {k: f"e2e.{uid}.{k.replace('_', '.')}" for k in
              ("posts_raw", "posts_classified", "alerts_events", "deadletter")}
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url, "LYSSNA_REDIS_PREFIX": f"e2e:{uid}:",
        "LYSSNA_API_KEY": API_KEY, SECRET_ENV: secret,
        "LYSSNA_CLASSIFY_APP_ID": f"e2e-{uid}-classify", "LYSSNA_ALERTS_APP_ID": f"e2e-{uid}-alerts",
        **{f"LYSSNA_TOPIC_{k.upper()}": v for k, v in topics.items()},
        **{f"LYSSNA_{svc.upper()}_PORT": str(free_port()) for svc in ("ingest", "classify", "alerts")},
    }
    stack = Stack(config=config, env=env, name=name or f"e2e-{uid}", run_dir=tmp / "run", log_dir=tmp / "logs",
                  services=services)
    try:
        stack.up(infra=False)
    except BaseException:
        stack.down(timeout=10)
        receiver.stop()
        raise
    return E2EStack(stack, receiver, secret, uid, bootstrap, redis_url, topics)


def stop_stack(e: E2EStack) -> None:
    e.stack.down(timeout=15)
    e.receiver.stop()
    _cleanup(e)


def _cleanup(e: E2EStack) -> None:
    """Drop the stack's topics (ours and the alerts' Faust topics) and Redis keys."""
    try:
        drop_namespace(e.bootstrap, e.redis_url, (f"e2e.{e.uid}.", f"e2e-{e.uid}-"), f"e2e:{e.uid}:",
                       client_id="e2e-cleanup")
    except Exception:  # noqa: BLE001 - a broker already gone (private one) has nothing to clean
        pass


# ------------------------------------------------------------------ private infrastructure

def infra_cmd(cmd: str, component: str, **ports: int) -> None:
    env = {**os.environ, **{f"LYSSNA_{k.upper()}_PORT": str(v) for k, v in ports.items()}}
    subprocess.run([str(ROOT / "scripts" / "infra.sh"), cmd, component], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)


@dataclass
class Prometheus:
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        doc = r.json()
        assert doc["status"] == "success", doc
        return doc["data"]["result"]


def start_prometheus(tmp: Path, stack: Stack) -> Prometheus:
    port = free_port()
    doc = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "rules.yml")],
        "scrape_configs": [{"job_name": f"lyssna-{svc}", "static_configs": [{"targets": [f"127.0.0.1:{s.port}"]}]}
                           for svc, s in stack.services.items()],
    }
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "LYSSNA_PROMETHEUS_PORT": str(port), "LYSSNA_PROMETHEUS_CONFIG": str(cfg)}
    subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up", "prometheus"], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)
    return Prometheus(port, cfg)


def stop_prometheus(p: Prometheus) -> None:
    infra_cmd("down", "prometheus", prometheus=p.port)
    shutil.rmtree(ROOT / ".local" / f"prometheus-{p.port}", ignore_errors=True)


def wait_ready_again(stack: Stack, timeout: float = 120) -> None:
    for svc in stack.services.values():
        wait_for(lambda: svc.readiness()[0], timeout=timeout, interval=0.5, what=f"{svc.service} /readyz")


def ids_in(values: Iterable[bytes]) -> set[str]:
    return {json.loads(v)["id"] for v in values}
