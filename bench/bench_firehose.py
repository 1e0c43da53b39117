"""Firehose: the running stack at fixed high rates where 2% of posts mention a watched organization.

Starts ingest, classify and alerts as `make up` does (bench_e2e.bench_stack), with
``classify.scope: mentions`` (the default) and a watchlist of a few hundred
invented organizations. The replay mixes the project's labelled posts (six
languages, a few words to a long blog paragraph; they name other organizations
or none, so they are irrelevant here) with 2% posts that name a watched one.
Every ~10 s one watched organization gets a burst that breaks its count rule.

Each phase pushes one rate for ``--seconds`` (NDJSON batches, a few requests
in flight) and measures:
- accepted -> classified p95 of the mention-bearing posts (ingest's answer to the
  CreateTime of the record classify produced); irrelevant posts share their
  partitions, so a classify worker that falls behind delays these too;
- the CPU seconds each service (and the Kafka broker) spent per 1,000 accepted posts;
- after the phase: every accepted post accounted for (classified, skipped as
  irrelevant, or dead-lettered: classify's own counters) and every breach delivered
  as a signed webhook.
The figure is the highest rate whose phase held p95 < 2 s with nothing missing.
Then, with the stack stopped, the classifier alone on mention-bearing posts (posts/s).

    python -m bench.bench_firehose [--rates 1000,2000,3000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.bench_e2e import _TEXTS, _alerts, _watch, bench_stack, percentiles, teardown

GOAL_RATE = 3000
GOAL_P95_S = 2.0
MENTION_SHARE = 0.02
THRESHOLD = 5
WINDOW_S = 10
BURST_EVERY_S = 10
BATCH = 250
IN_FLIGHT = 4
STEADY_ORGS = 300

# The e2e bench's mention templates, plus Danish and Finnish ones.
_MENTIONS = [
    *_TEXTS,
    "Min leder hos {org} giver aldrig feedback, det er så frustrerende.",
    "{org} palkkasi kesätyöntekijöitä, hakuaika päättyy perjantaina.",
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="1000,2000,3000,4000", help="posts/s of each phase, in order")
    p.add_argument("--seconds", type=float, default=60, help="length of each phase")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p


def _org_name(kind: str, i: int) -> str:
    # Letters only (K..Z): digits and a trailing "AB" read differently to the matcher.
    return f"Firehose{kind}{chr(75 + i // 256 % 16)}{chr(75 + i // 16 % 16)}{chr(75 + i % 16)}"


def irrelevant_texts() -> list[str]:
    """The labelled posts: real-looking, every length and language, none names a bench org."""
    from lyssna.classify.training.dataset import load_examples

    return [e.text for e in load_examples()]


def _config(path: Path, steady: list[str], bursts: list[str], receiver_url: str) -> Path:
    doc = {
        "alerts": {"bucket": "1s", "evaluate_interval": "1s", "retry_schedule": ["0s", "1s", "2s"],
                   "delivery_timeout": "5s"},
        "organizations": [{"name": o, "aliases": []} for o in steady + bursts],
        # One rule per burst organization: the steady mentions never breach anything.
        "rules": [{"name": f"burst-{i}", "org": o, "window": f"{WINDOW_S}s", "cooldown": "1h",
                   "condition": {"type": "count", "threshold": THRESHOLD}, "notify": ["bench"]}
                  for i, o in enumerate(bursts)],
        "webhooks": [{"name": "bench", "url": receiver_url, "format": "json", "secret_env": "LYSSNA_BENCH_SECRET",
                      "allow_private_network": True, "timeout": "5s"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _broker_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _counter(metrics_text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+]+)"
    m = re.search(pattern, metrics_text)
    return float(m.group(1)) if m else 0.0


def classify_outcomes(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {o: _counter(text, "lyssna_classify_posts_total", outcome=o) for o in ("classified", "skipped", "deadletter")}


def run(settings_or_args: Any = None) -> dict:
    from lyssna.local.receiver import WebhookReceiver
    from lyssna.local.stack import LOCAL, new_webhook_secret

    opts = _parser().parse_args([])
    if isinstance(settings_or_args, argparse.Namespace) and hasattr(settings_or_args, "rates"):
        opts = settings_or_args
    rates = [int(r) for r in str(opts.rates).split(",")]
    bench_id = uuid.uuid4().hex[:8]
    bursts_per_phase = max(1, int(opts.seconds // BURST_EVERY_S))
    steady = [_org_name("S", i) for i in range(STEADY_ORGS)]
    bursts = [_org_name("B", i) for i in range(bursts_per_phase * len(rates))]
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret).start()
    work = LOCAL / "bench" / f"firehose-{bench_id}"
    work.mkdir(parents=True, exist_ok=True)
    topics, stack = bench_stack(opts, bench_id, secret, _config(work / "lyssna.yaml", steady, bursts, receiver.url),
                                work)
    classified_at: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(opts.bootstrap_servers, topics["posts_classified"], stop,
                                                    classified_at), daemon=True)
    rnd = random.Random(7)
    background = irrelevant_texts()
    phases, errors = [], []
    try:
        stack.up(lambda m: print(f"[bench firehose] {m}", file=sys.stderr), infra=False)
        watcher.start()
        url = f"{stack['ingest'].url}/v1/posts"
        headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/x-ndjson"}
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=IN_FLIGHT)) as client, \
                ThreadPoolExecutor(IN_FLIGHT) as pool:
            def send(posts: list[dict]) -> tuple[float, list[str], str | None]:
                body = "\n".join(json.dumps(p, ensure_ascii=False) for p in posts).encode()
                try:
                    r = client.post(url, content=body, headers=headers)
                except httpx.HTTPError as e:
                    return time.time(), [], f"{type(e).__name__}: {e}"
                now = time.time()
                if r.status_code != 200:
                    return now, [], f"HTTP {r.status_code}"
                return now, [x["id"] for x in r.json()["results"] if x["status"] == "accepted"], None

            send([{"id": f"warm-{bench_id}-{i}", "text": background[i]} for i in range(200)])
            time.sleep(3)
            for n, rate in enumerate(rates):
                phase_bursts = bursts[n * bursts_per_phase:(n + 1) * bursts_per_phase]
                phases.append(_phase(n, rate, opts.seconds, phase_bursts, steady, background, rnd, send, pool,
                                     stack, classified_at, receiver, bench_id, errors))
                print(f"[bench firehose] {json.dumps(phases[-1])}", file=sys.stderr, flush=True)
    finally:
        teardown(stop, stack, receiver, watcher, opts, bench_id)
    held = [p["rate_posts_per_s"] for p in phases if p["held"]]
    return {"rates_posts_per_s": rates, "seconds_per_phase": opts.seconds, "mention_share": MENTION_SHARE,
            "phases": phases, "highest_sustained_posts_per_s": max(held) if held else 0,
            "classifier_on_mentions": classifier_on_mentions(steady), "goal_posts_per_s": GOAL_RATE,
            "goal_p95_s": GOAL_P95_S, "errors": errors[:5]}


def _phase(n, rate, seconds, phase_bursts, steady, background, rnd, send, pool, stack, classified_at, receiver,
           bench_id, errors) -> dict:
    accepted_at: dict[str, float] = {}
    mentions: set[str] = set()
    breach_at: dict[str, float] = {}
    interval = BATCH / rate
    n_batches = int(seconds / interval)
    burst_every = max(1, int(round(BURST_EVERY_S / interval)))
    pids = {svc: stack[svc].pid() for svc in ("ingest", "classify", "alerts")}
    brokers = _broker_pids()
    cpu0 = {**{s: cpu_seconds(p) for s, p in pids.items()}, "kafka": sum(map(cpu_seconds, brokers))}
    before = classify_outcomes(stack["classify"].url)
    futures = []
    start = time.perf_counter()
    for b in range(n_batches):
        delay = start + b * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        posts, org = [], None
        if b % burst_every == burst_every // 2 and b // burst_every < len(phase_bursts):
            org = phase_bursts[b // burst_every]
            posts = [{"id": f"m-{bench_id}-{n}-{b}-x{i}", "text": f"Alla på {org} är utbrända och chefen lyssnar "
                                                                   f"inte ({i})"} for i in range(THRESHOLD)]
        while len(posts) < BATCH:
            i = len(posts)
            if rnd.random() < MENTION_SHARE:
                posts.append({"id": f"m-{bench_id}-{n}-{b}-{i}",
                              "text": rnd.choice(_MENTIONS).format(org=rnd.choice(steady)) + f" ({b}.{i})"})
            else:
                posts.append({"id": f"p-{bench_id}-{n}-{b}-{i}", "text": rnd.choice(background) + f" ({b}.{i})"})
        mentions.update(p["id"] for p in posts if p["id"].startswith("m-"))
        futures.append((org, pool.submit(send, posts)))
        # Collect what has been answered, so the answer time is close to the real one.
        while futures and futures[0][1].done():
            _settle(futures.pop(0), accepted_at, breach_at, errors)
    for f in futures:
        _settle(f, accepted_at, breach_at, errors)
    sent_s = time.perf_counter() - start
    # Drain: every accepted post accounted for by classify, every breach delivered.
    drain_start = time.monotonic()
    deadline, done_at = drain_start + 120, None
    while time.monotonic() < deadline:
        after = classify_outcomes(stack["classify"].url)
        handled = sum(after.values()) - sum(before.values())
        if handled >= len(accepted_at) and len(_alerts(receiver, breach_at)) >= len(breach_at):
            done_at = time.monotonic()
            break
        time.sleep(0.5)
    drain_s = round(done_at - drain_start, 1) if done_at else None
    after = classify_outcomes(stack["classify"].url)
    cpu1 = {**{s: cpu_seconds(p) for s, p in pids.items()}, "kafka": sum(map(cpu_seconds, brokers))}
    delta = {k: after[k] - before[k] for k in after}
    # Ingest scopes a pushed id as "<namespace>/<source>/<id>".
    lat = [classified_at[i] - t for i, t in accepted_at.items()
           if i.rsplit("/", 1)[-1] in mentions and i in classified_at]
    delivered = _alerts(receiver, breach_at)
    accounted = sum(delta.values())
    p95 = percentiles(lat)["p95"]
    per_k = {s: round((cpu1[s] - cpu0[s]) / max(1, len(accepted_at)) * 1000, 3) for s in cpu0}
    return {
        "rate_posts_per_s": rate, "achieved_posts_per_s": round(len(accepted_at) / sent_s, 1),
        "posts_accepted": len(accepted_at),
        "mention_posts": sum(1 for i in accepted_at if i.rsplit("/", 1)[-1] in mentions),
        "classified": int(delta["classified"]), "skipped_irrelevant": int(delta["skipped"]),
        "deadlettered": int(delta["deadletter"]), "unaccounted": int(len(accepted_at) - accounted),
        "accepted_to_classified_mentions_s": percentiles(lat),
        "breaches": len(breach_at), "breaches_delivered": len(delivered), "drain_s": drain_s,
        "cpu_s_per_1000_posts": per_k,
        "held": bool(p95 is not None and p95 < GOAL_P95_S and accounted >= len(accepted_at)
                     and len(delivered) == len(breach_at) and len(accepted_at) >= 0.95 * rate * sent_s),
    }


def _settle(item, accepted_at, breach_at, errors) -> None:
    org, future = item
    now, ids, error = future.result()
    if error:
        errors.append(error)
        return
    for pid in ids:
        accepted_at[pid] = now
    if org is not None:
        breach_at[org] = now


def classifier_on_mentions(orgs: list[str], n: int = 1000) -> dict:
    """The classify path alone (scope: mentions) on posts that all name a watched organization."""
    from lyssna.classify.classifier import Classifier
    from lyssna.common.config import OrganizationConfig, load_settings

    settings = load_settings(None, env={})
    settings = settings.model_copy(update={"organizations": [OrganizationConfig(name=o) for o in orgs]})
    clf = Classifier.from_settings(settings)
    rnd = random.Random(3)
    texts = [rnd.choice(_MENTIONS).format(org=rnd.choice(orgs)) + f" ({i})" for i in range(n)]
    clf.classify_texts(texts[:128])
    start = time.perf_counter()
    clf.classify_texts(texts)
    return {"posts_per_s": round(n / (time.perf_counter() - start), 1),
            "path": f"{clf.encoder.precision} ({clf.encoder.runtime})"}


if __name__ == "__main__":
    print(json.dumps(run(_parser().parse_args()), indent=2))


def section(r: dict) -> list[str]:
    """BENCHMARKS.md's firehose section."""
    out = ["## Firehose: the running stack at fixed rates, 2% of posts mention a watched organization", "",
           f"ingest → Kafka → classify (`scope: mentions`) → alerts, {r['seconds_per_phase']:g} s per rate, "
           f"{STEADY_ORGS} watched organizations plus one burst that breaks a count rule every {BURST_EVERY_S} s. "
           "p95 is accepted → classified of the mention-bearing posts; every accepted post must be accounted for "
           "(classified, skipped as irrelevant, or dead-lettered) and every breach delivered.", "",
           "| rate (posts/s) | achieved | accepted | classified | skipped | dead letters | unaccounted | "
           "p95 (s) | breaches delivered | CPU s / 1,000 posts (ingest, classify, alerts, kafka) | held |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in r["phases"]:
        c = p["cpu_s_per_1000_posts"]
        out.append(f"| {p['rate_posts_per_s']} | {p['achieved_posts_per_s']} | {p['posts_accepted']} | "
                   f"{p['classified']} | {p['skipped_irrelevant']} | {p['deadlettered']} | {p['unaccounted']} | "
                   f"{p['accepted_to_classified_mentions_s']['p95']} | {p['breaches_delivered']}/{p['breaches']} | "
                   f"{c['ingest']}, {c['classify']}, {c['alerts']}, {c['kafka']} | {'yes' if p['held'] else 'no'} |")
    m = r["classifier_on_mentions"]
    out += ["", f"**Highest sustained rate: {r['highest_sustained_posts_per_s']} posts/s** (goal ≥ "
                f"{r['goal_posts_per_s']} with p95 < {r['goal_p95_s']:g} s). The classifier alone on "
                f"mention-bearing posts: {m['posts_per_s']} posts/s ({m['path']}).", ""]
    return out
