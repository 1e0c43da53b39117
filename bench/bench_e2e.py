"""End-to-end latency at a steady 100 posts/s through the whole stack.

Starts the three services exactly as `make up` does (services/local/stack.py),
with the bench's own topics, app ids, Redis prefix and ports, and a local
webhook receiver. For ``--seconds`` it pushes ``--rate`` posts/s to ingest in
batches of ``--batch`` (one batch every batch/rate seconds), and every
``--alert-every`` seconds one batch carries a burst that breaks a count rule
for a fresh organization. Measured:

- acceptance -> classified: from ingest's answer (``accepted``, Kafka has the
  post) to the CreateTime of the post's record on ``posts.classified`` (set by
  classify's producer; one clock, one machine);
- breach -> webhook: from the answer to the batch holding the breaching post to
  the receiver getting the signed webhook.

    python bench/bench_e2e.py [--seconds 60] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/bench_e2e.py` as well as `python -m bench`

GOAL_CLASSIFIED_P95_S = 1.0
GOAL_WEBHOOK_P95_S = 2.0
THRESHOLD = 5
WINDOW_S = 10

_TEXTS = [
    "Jobbar på {org} sedan tre år. Chefen lyssnar aldrig och vi är alldeles för få på avdelningen.",
    "Great interview experience at {org} today, the recruiters were friendly and quick.",
    "{org} söker utvecklare i Göteborg! Ansök senast fredag, flexibla arbetstider.",
    "Kundtjänsten hos {org} svarade inte på två veckor. Riktigt dåligt bemötande.",
    "Die Stimmung bei {org} ist seit den Entlassungen im Keller.",
    "Hyggelig intervju hos {org} i Oslo, men de brukte lang tid på å gi svar.",
]
# Everyday traffic names organizations outside the watchlist, so only the bursts alert.
_OTHER_ORGS = ["Nordvik Energi", "Kvarnby Bank", "Fjällhem Bostäder", "Acme Robotics"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--rate", type=float, default=100, help="posts per second")
    p.add_argument("--batch", type=int, default=10, help="posts per request")
    p.add_argument("--alert-every", type=float, default=5, help="seconds between rule breaches")
    p.add_argument("--batch-within", default=None,
                   help="classify.batch_within for the run (default: the service's, 200ms)")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p


def _options(arg: Any) -> argparse.Namespace:
    opts = _parser().parse_args([])
    if arg is None:
        return opts
    if hasattr(arg, "kafka") and hasattr(arg, "redis"):
        opts.bootstrap_servers, opts.redis_url = arg.kafka.bootstrap_servers, arg.redis.url
        return opts
    for k, v in (arg if isinstance(arg, dict) else vars(arg)).items():
        setattr(opts, k.replace("-", "_"), v)
    return opts


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    v = sorted(values)

    def q(p: float) -> float:  # nearest rank
        return round(v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))], 4)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(v[-1], 4), "n": len(v)}


def _config(path: Path, orgs: list[str], receiver_url: str, batch_within: str | None = None) -> Path:
    doc = {
        # Every post through the transformer, as this benchmark always measured; the
        # firehose benchmark runs the default scope (mentions).
        "classify": {"scope": "all", **({"batch_within": batch_within} if batch_within else {})},
        "alerts": {"bucket": "1s", "evaluate_interval": "1s", "retry_schedule": ["0s", "1s", "2s"],
                   "delivery_timeout": "5s"},
        "organizations": [{"name": o, "aliases": []} for o in orgs],
        "rules": [{"name": "bench-burst", "org": "*", "window": f"{WINDOW_S}s", "cooldown": "1h",
                   "condition": {"type": "count", "threshold": THRESHOLD}, "notify": ["bench"]}],
        "webhooks": [{"name": "bench", "url": receiver_url, "format": "json", "secret_env": "LYSSNA_BENCH_SECRET",
                      "allow_private_network": True, "timeout": "5s"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _watch(bootstrap: str, topic: str, stop: threading.Event, seen: dict[str, float]) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=200,
                             fetch_max_wait_ms=50)
    try:
        while not stop.is_set():
            for msg in consumer:
                pid = json.loads(msg.value)["id"]
                seen.setdefault(pid, msg.timestamp / 1000.0)
    finally:
        consumer.close()


def teardown(stop: threading.Event, stack, receiver, watcher: threading.Thread, opts, bench_id: str) -> None:
    """Stop the watcher, the stack and the receiver, and drop the run's topics and keys."""
    stop.set()
    stack.down()
    receiver.stop()
    if watcher.is_alive():
        watcher.join(timeout=5)
    try:
        if not os.environ.get("LYSSNA_BENCH_KEEP"):  # keep topics and keys to look into a run
            _cleanup(opts.bootstrap_servers, opts.redis_url, bench_id)
    except Exception:  # noqa: BLE001 - leftovers are harmless
        pass


def _cleanup(bootstrap: str, redis_url: str, bench_id: str) -> None:
    from lyssna.local.cleanup import drop_namespace

    drop_namespace(bootstrap, redis_url, (f"bench.{bench_id}.", f"bench-{bench_id}-"), f"bench:{bench_id}:",
                   client_id="bench-cleanup")


def bench_stack(opts: argparse.Namespace, bench_id: str, secret: str, config: Path, work: Path):
    """The three services as `make up` starts them, on the bench's own topics, app ids,
    Redis prefix and ports: (topic names by role, the Stack)."""
    from lyssna.local.stack import Stack, free_port

    topics = {k: f"bench.{bench_id}.{k.replace('_', '.')}" for k in
              ("posts_raw", "posts_classified", "alerts_events", "deadletter")}
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": opts.bootstrap_servers, "REDIS_URL": opts.redis_url,
        "LYSSNA_REDIS_PREFIX": f"bench:{bench_id}:", "LYSSNA_API_KEY": "bench-key", "LYSSNA_BENCH_SECRET": secret,
        "LYSSNA_AUTHOR_KEY": "bench:bench-only-author-key-0123456789abcdef",
        "LYSSNA_CLASSIFY_APP_ID": f"bench-{bench_id}-classify", "LYSSNA_ALERTS_APP_ID": f"bench-{bench_id}-alerts",
        **{f"LYSSNA_TOPIC_{k.upper()}": v for k, v in topics.items()},
        **{f"LYSSNA_{svc.upper()}_PORT": str(free_port()) for svc in ("ingest", "classify", "alerts")},
    }
    return topics, Stack(config=config, env=env, name=f"bench-{bench_id}", run_dir=work / "run",
                         log_dir=work / "logs")


def run(settings_or_args: Any = None) -> dict:
    from lyssna.local.receiver import WebhookReceiver
    from lyssna.local.stack import LOCAL, new_webhook_secret

    opts = _options(settings_or_args)
    bench_id = uuid.uuid4().hex[:8]
    n_alerts = int(opts.seconds // opts.alert_every)
    # Letters K..Z only: a name ending in "AB" reads as a company-form suffix to the matcher.
    orgs = [f"Benchbolag{chr(75 + i // 16)}{chr(75 + i % 16)}" for i in range(max(1, n_alerts))]
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret).start()
    work = LOCAL / "bench" / f"e2e-{bench_id}"
    work.mkdir(parents=True, exist_ok=True)
    config = _config(work / "lyssna.yaml", orgs, receiver.url, opts.batch_within)
    topics, stack = bench_stack(opts, bench_id, secret, config, work)
    stop = threading.Event()
    classified_at: dict[str, float] = {}
    watcher = threading.Thread(target=_watch, args=(opts.bootstrap_servers, topics["posts_classified"], stop,
                                                    classified_at), daemon=True)
    accepted_at: dict[str, float] = {}
    breach_at: dict[str, float] = {}
    errors: list[str] = []
    rnd = random.Random(11)
    try:
        stack.up(lambda m: print(f"[bench e2e] {m}", file=sys.stderr), infra=False)
        watcher.start()
        url = f"{stack['ingest'].url}/v1/posts"
        headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/x-ndjson"}
        interval = opts.batch / opts.rate
        n_batches = int(opts.seconds / interval)
        per_alert = max(1, int(round(opts.alert_every / interval)))
        with httpx.Client(timeout=30) as client:
            # Warm-up (not measured): the first batches pay for connections and lazy imports.
            warm = [{"id": f"warm-{bench_id}-{i}", "text": _TEXTS[i % len(_TEXTS)].format(org="Nordvik Energi")}
                    for i in range(20)]
            client.post(url, content="\n".join(json.dumps(p) for p in warm).encode(), headers=headers)
            time.sleep(3)
            start = time.perf_counter()
            for b in range(n_batches):
                due = start + b * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                posts = []
                org = None
                if b % per_alert == per_alert // 2 and b // per_alert < len(orgs):
                    org = orgs[b // per_alert]
                    posts += [{"id": f"b-{bench_id}-{b}-{i}", "text": f"Alla på {org} är utbrända och chefen lyssnar inte ({i})"}
                              for i in range(THRESHOLD)]
                while len(posts) < opts.batch:
                    i = len(posts)
                    posts.append({"id": f"p-{bench_id}-{b}-{i}",
                                  "text": rnd.choice(_TEXTS).format(org=rnd.choice(_OTHER_ORGS)) + f" ({b}.{i})"})
                r = client.post(url, content="\n".join(json.dumps(p, ensure_ascii=False) for p in posts).encode(),
                                headers=headers)
                now = time.time()
                if r.status_code != 200:
                    errors.append(f"batch {b}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                for x in r.json()["results"]:
                    if x["status"] == "accepted":
                        accepted_at[x["id"]] = now
                if org is not None:
                    breach_at[org] = now
            sent_s = time.perf_counter() - start
        # Stragglers: everything accepted should come out; give it a while.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(set(accepted_at) - set(classified_at)) > 0
                                               or len(_alerts(receiver, breach_at)) < len(breach_at)):
            time.sleep(0.5)
    finally:
        teardown(stop, stack, receiver, watcher, opts, bench_id)
    cls = [classified_at[i] - t for i, t in accepted_at.items() if i in classified_at]
    got = _alerts(receiver, breach_at)
    hooks = [got[o] - t for o, t in breach_at.items() if o in got]
    result = {
        "rate_posts_per_s": opts.rate, "seconds": opts.seconds, "batch": opts.batch,
        "classify_batch_within": opts.batch_within or "200ms (default)",
        "achieved_posts_per_s": round(len(accepted_at) / sent_s, 1) if accepted_at else 0,
        "posts_accepted": len(accepted_at), "posts_classified": len(cls),
        "accepted_to_classified_s": percentiles(cls),
        "breaches": len(breach_at), "webhooks_received": len(hooks),
        "breach_to_webhook_s": percentiles(hooks),
        # A breach classified after its window closed is counted but never judged
        # (alerts judge only the current window): no webhook, so no latency.
        "breaches_without_webhook": sorted(set(breach_at) - set(got)),
        "goal_p95_s": {"accepted_to_classified": GOAL_CLASSIFIED_P95_S, "breach_to_webhook": GOAL_WEBHOOK_P95_S},
        "errors": errors[:5],
    }
    return result


def _alerts(receiver, breach_at: dict[str, float]) -> dict[str, float]:
    """org -> when its first verified firing webhook arrived."""
    out: dict[str, float] = {}
    for rec in receiver.requests:
        try:
            doc = rec.json
        except ValueError:
            continue
        org = doc.get("organization") if isinstance(doc, dict) else None
        if rec.verified and doc.get("type") == "alert.firing" and org in breach_at and org not in out:
            out[org] = rec.received_at
    return out


if __name__ == "__main__":
    result = run(_parser().parse_args())
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["posts_classified"] else 1)
