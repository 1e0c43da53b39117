"""Ingest throughput: posts/s through ``POST /v1/posts`` into the real broker.

Starts the ingest service as its own process (`lyssna serve ingest`, as compose
runs it) against the local Kafka and Redis, sends NDJSON batches of 500 fresh
posts from a few concurrent clients, and reports the median over several runs.
Every post must come back ``accepted`` (acknowledged by Kafka) for a run to
count. The bench's topic and Redis keys are removed afterwards.

    python bench/bench_ingest.py [--runs 5] [--batches 20] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from lyssna.local.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
GOAL_POSTS_PER_S = 5000

_TEXTS = [
    "Jobbar på {org} sedan tre år. Chefen lyssnar aldrig och vi är alldeles för få på avdelningen, stressen är enorm.",
    "Great interview experience at {org} today, the recruiters were friendly and answered every question quickly.",
    "{org} söker utvecklare i Göteborg! Ansök senast fredag, vi erbjuder flexibla arbetstider och friskvårdsbidrag.",
    "Kundtjänsten hos {org} svarade inte på två veckor. Riktigt dåligt bemötande, byter leverantör nu.",
    "Stolt över att {org} blev utsedd till en av Sveriges bästa arbetsplatser i år #karriär #arbetsmiljö",
    "Die Stimmung bei {org} ist seit den Entlassungen im Keller, niemand weiß wie es weitergeht.",
    "Hyggelig intervju hos {org} i Oslo, men de brukte lang tid på å gi svar etter andre runde.",
]
_ORGS = ["Nordvik Energi", "Kvarnby Bank", "Fjällhem Bostäder", "Acme Robotics"]


def make_batches(run_id: str, batches: int, batch_size: int, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for b in range(batches):
        lines = []
        for i in range(batch_size):
            org = rnd.choice(_ORGS)
            lines.append(json.dumps({
                "id": f"bench:{run_id}:{b}:{i}",
                "text": rnd.choice(_TEXTS).format(org=org) + f" ({b}-{i})",
                "author": f"user{rnd.randrange(10_000)}",
                "url": f"https://social.example/@user/{b}{i:04d}",
                "created_at": (base + timedelta(seconds=b * batch_size + i)).isoformat(),
                "lang": rnd.choice(["sv", "en", "de", "no"]),
            }, ensure_ascii=False))
        out.append(("\n".join(lines) + "\n").encode())
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _send_all(url: str, key: str, payloads: list[bytes], concurrency: int) -> tuple[float, int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    accepted = 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            r = await client.post(url, content=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
            accepted += r.json()["accepted"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, accepted


def _options(settings_or_args: Any) -> argparse.Namespace:
    opts = _parser().parse_args([])
    if settings_or_args is None:
        return opts
    if hasattr(settings_or_args, "kafka") and hasattr(settings_or_args, "redis"):  # a Settings object
        opts.bootstrap_servers = settings_or_args.kafka.bootstrap_servers
        opts.redis_url = settings_or_args.redis.url
        return opts
    values = settings_or_args if isinstance(settings_or_args, dict) else vars(settings_or_args)
    for k, v in values.items():
        setattr(opts, k, v)
    return opts


def run(settings_or_args: Any = None) -> dict:
    """Run the benchmark; returns the figures (posts/s per run and the median)."""
    opts = _options(settings_or_args)
    bench_id = uuid.uuid4().hex[:8]
    topic = f"bench.{bench_id}.posts.raw"
    prefix = f"bench:{bench_id}:"
    port = free_port()
    key = uuid.uuid4().hex
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": opts.bootstrap_servers, "REDIS_URL": opts.redis_url,
           "LYSSNA_REDIS_PREFIX": prefix, "LYSSNA_TOPIC_POSTS_RAW": topic,
           "LYSSNA_TOPIC_DEADLETTER": f"bench.{bench_id}.deadletter",
           "LYSSNA_INGEST_PORT": str(port), "LYSSNA_API_KEY": key, "LYSSNA_LOG_LEVEL": "WARNING",
           # Authors are pseudonymized by default (lyssna.common.pseudonyms): part of what is measured.
           "LYSSNA_AUTHOR_KEY": "bench:bench-only-author-key-0123456789abcdef"}
    env.pop("LYSSNA_CONFIG", None)  # no connectors: only the push API is measured
    proc = subprocess.Popen([sys.executable, "-m", "lyssna.cli", "serve", "ingest"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if opts.quiet else None)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        url = f"{base}/v1/posts"
        # Warm-up: first metadata fetch, connection set-up, code paths.
        asyncio.run(_send_all(url, key, make_batches(f"{bench_id}-warm", 4, opts.batch_size), opts.concurrency))
        runs = []
        for n in range(opts.runs):
            payloads = make_batches(f"{bench_id}-{n}", opts.batches, opts.batch_size, seed=n)
            cpu0 = _cpu_seconds(proc.pid)
            elapsed, accepted = asyncio.run(_send_all(url, key, payloads, opts.concurrency))
            cpu = _cpu_seconds(proc.pid) - cpu0
            expected = opts.batches * opts.batch_size
            if accepted != expected:
                raise RuntimeError(f"run {n}: {accepted} of {expected} posts accepted")
            runs.append({"posts": accepted, "seconds": round(elapsed, 3),
                         "posts_per_s": round(accepted / elapsed, 1),
                         "service_cpu_s": round(cpu, 2)})
            if not opts.quiet:
                print(f"run {n + 1}/{opts.runs}: {runs[-1]['posts_per_s']:.0f} posts/s "
                      f"(service CPU {cpu / elapsed:.0%} of one core)", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        _cleanup(opts, topic, f"bench.{bench_id}.deadletter", prefix)
    median = statistics.median(r["posts_per_s"] for r in runs)
    return {
        "benchmark": "ingest", "what": "posts/s through POST /v1/posts (NDJSON) into Kafka, acks=all",
        "batch_size": opts.batch_size, "batches_per_run": opts.batches, "concurrency": opts.concurrency,
        "runs": runs, "median_posts_per_s": median, "goal_posts_per_s": GOAL_POSTS_PER_S,
        "meets_goal": median >= GOAL_POSTS_PER_S, "cpus": os.cpu_count(),
    }


def _wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ingest service exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"ingest service not ready within {timeout_s}s")


def _cleanup(opts: argparse.Namespace, topic: str, deadletter: str, prefix: str) -> None:
    import redis
    from kafka.admin import KafkaAdminClient

    try:
        r = redis.Redis.from_url(opts.redis_url)
        batch = []
        for k in r.scan_iter(f"{prefix}*", count=5000):
            batch.append(k)
            if len(batch) >= 5000:
                r.delete(*batch)
                batch = []
        if batch:
            r.delete(*batch)
        r.close()
    except Exception as e:  # noqa: BLE001 - cleanup is best effort
        print(f"bench cleanup (redis): {e}", file=sys.stderr)
    try:
        admin = KafkaAdminClient(bootstrap_servers=opts.bootstrap_servers)
        existing = set(admin.list_topics())
        admin.delete_topics([t for t in (topic, deadletter) if t in existing])
        admin.close()
    except Exception as e:  # noqa: BLE001
        print(f"bench cleanup (kafka): {e}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batches", type=int, default=20, help="batches per run")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--quiet", action="store_true")
    return p


if __name__ == "__main__":
    result = run(_parser().parse_args())
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["runs"] else 1)
