"""Scale-out: classify with one and with two workers, and how long a handover
takes after ``kill -9`` of an alerts replica or of the ingest replica that polls
a connector.

- Classifier throughput: the same posts (the labelled ones of 20-60 tokens, as
  in bench_classify) produced onto a fresh ``posts.raw`` and classified by 1, then
  2, ``lyssna serve classify`` processes in one consumer group
  (``classify.scope: all``, so every post goes through the transformer). The
  workers are started and their group settled first; the clock runs from the
  first post produced to the last one counted in the workers' metrics. On a
  machine with 2 cores two workers share the same cores, so the second one can
  add little or nothing: the figure says so rather than hides it.
- Alerts handover: two ``lyssna serve alerts`` processes split the mentions
  partitions; one gets SIGKILL; the time until the survivor judges every
  partition (its counts restored from the changelog). Bounded by the Kafka
  session timeout of the counting app (15 s).
- Connector handover: two ingest replicas and one RSS source on 127.0.0.1
  (``connectors_session_timeout: 6s``, polled every 2 s); the replica running
  it gets SIGKILL; the time until the feed is fetched again (by the other).

The replica logic is the one the tests check (tests/helpers/replicas.py).

    python -m bench.bench_scaleout [--posts 2000] [--handovers 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_firehose import classify_outcomes  # noqa: E402

AUTHOR_KEY = "bench:bench-only-author-key-0123456789abcdef"
SESSION_TIMEOUT = "6s"
POLL_INTERVAL = "2s"
PARTITIONS = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posts", type=int, default=2000, help="posts classified per worker count")
    p.add_argument("--handovers", type=int, default=3, help="kill -9 handovers timed per kind")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    return p


class _Run:
    """One measurement's namespace: topics, app ids, Redis prefix, log folder; dropped at the end."""

    def __init__(self, opts: argparse.Namespace, kind: str):
        from lyssna.local.stack import LOCAL

        self.opts, self.id = opts, uuid.uuid4().hex[:8]
        self.work = LOCAL / "bench" / f"scaleout-{kind}-{self.id}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.topics = {k: f"bench.{self.id}.{k.replace('_', '.')}" for k in
                       ("posts_raw", "posts_classified", "alerts_events", "deadletter")}
        self.procs: list = []

    def env(self, service: str, port: int) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.opts.bootstrap_servers, "REDIS_URL": self.opts.redis_url,
                "LYSSNA_REDIS_PREFIX": f"bench:{self.id}:", "LYSSNA_API_KEY": "bench-key",
                "LYSSNA_AUTHOR_KEY": AUTHOR_KEY, "LYSSNA_CLASSIFY_APP_ID": f"bench-{self.id}-classify",
                "LYSSNA_ALERTS_APP_ID": f"bench-{self.id}-alerts", f"LYSSNA_{service.upper()}_PORT": str(port),
                **{f"LYSSNA_TOPIC_{k.upper()}": v for k, v in self.topics.items()}}

    def start(self, service: str, n: int, config: Path) -> list:
        from lyssna.common.kafka_admin import ensure_topics
        from tests.helpers.kafka_io import ServiceProcess, free_port

        ensure_topics(self.opts.bootstrap_servers, self.topics.values(), partitions=PARTITIONS)
        new = []
        for _ in range(n):
            port = free_port()
            new.append(ServiceProcess(service, self.env(service, port), port=port, log_dir=self.work,
                                      config=config).start())
        self.procs += new
        for p in new:
            p.wait_ready(timeout=300)
        return new

    def config(self, doc: dict) -> Path:
        import yaml

        path = self.work / "lyssna.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def close(self) -> None:
        from lyssna.local.cleanup import drop_namespace

        for p in self.procs:
            p.stop(timeout=15)
        if not os.environ.get("LYSSNA_BENCH_KEEP"):
            try:
                drop_namespace(self.opts.bootstrap_servers, self.opts.redis_url,
                               (f"bench.{self.id}.", f"bench-{self.id}-"), f"bench:{self.id}:",
                               client_id="bench-cleanup")
            except Exception:  # noqa: BLE001 - leftovers are harmless
                pass


def _texts(n: int) -> list[str]:
    from transformers import AutoTokenizer

    from bench.bench_classify import bench_posts
    from lyssna.classify.encoder import resolve_model_path
    from lyssna.common.config import load_settings

    path = resolve_model_path(load_settings(None, env={}).classify.model)
    return bench_posts(AutoTokenizer.from_pretrained(path), n)


def classify_throughput(opts: argparse.Namespace, workers: int, texts: list[str]) -> dict:
    from kafka import KafkaProducer

    from lyssna.common.contracts import Post
    from tests.helpers.kafka_io import wait_for
    from tests.helpers.replicas import group_members

    run = _Run(opts, f"classify{workers}")
    try:
        procs = run.start("classify", workers, run.config({"classify": {"scope": "all"}}))
        wait_for(lambda: group_members(opts.bootstrap_servers, f"bench-{run.id}-classify") == workers,
                 timeout=180, interval=0.5, what=f"a settled group of {workers} classify workers")
        urls = [f"http://127.0.0.1:{p.port}" for p in procs]
        load = os.getloadavg()[0]  # other work on the machine takes cores from the workers
        producer = KafkaProducer(bootstrap_servers=opts.bootstrap_servers, acks="all", linger_ms=20)
        start = time.monotonic()
        try:
            for i, text in enumerate(texts):
                post = Post(id=f"bench-{run.id}-{i}", source="bench", text=text)
                producer.send(run.topics["posts_raw"], key=post.id.encode(), value=post.to_bytes())
            producer.flush(timeout=60)
        finally:
            producer.close()

        def handled() -> float:
            return sum(sum(classify_outcomes(u).values()) for u in urls)
        wait_for(lambda: handled() >= len(texts), timeout=1800, interval=0.2, what="every post classified")
        seconds = time.monotonic() - start
        per_worker = [int(sum(classify_outcomes(u).values())) for u in urls]
    finally:
        run.close()
    return {"workers": workers, "posts": len(texts), "seconds": round(seconds, 2),
            "posts_per_s": round(len(texts) / seconds, 1), "posts_per_worker": per_worker,
            "load_avg_1m_at_start": round(load, 1)}


def alerts_handover(opts: argparse.Namespace) -> float:
    from tests.helpers.alerts_harness import alerts_config_file, count_rule
    from tests.helpers.replicas import alerts_handover as handover, wait_alerts_split

    run = _Run(opts, "alerts")
    try:
        config = alerts_config_file(run.work / "alerts.yaml", rules=[count_rule("r", window="6h", notify=[])],
                                    bucket="1m")
        a, b = run.start("alerts", 2, config)
        wait_alerts_split([a, b], PARTITIONS)
        return handover(a, b, PARTITIONS)
    finally:
        run.close()


def connector_handover(opts: argparse.Namespace) -> float:
    from tests.helpers.ingest_support import FeedServer, rss
    from tests.helpers.kafka_io import wait_for
    from tests.helpers.replicas import connector_owner

    run = _Run(opts, "connector")
    with FeedServer(rss(2)) as srv:
        try:
            config = run.config({
                "ingest": {"connectors_session_timeout": SESSION_TIMEOUT},
                "sources": [{"type": "rss", "name": "shared-feed", "url": f"{srv.base}/feed.xml",
                             "interval": POLL_INTERVAL, "allow_private_network": True}]})
            procs = run.start("ingest", 2, config)
            owner = connector_owner(procs)
            seen = len(srv.requests)
            wait_for(lambda: len(srv.requests) >= seen + 2, timeout=60, what="the owner polling")
            # Killed just after one of its polls: the worst case of a poll interval.
            seen = len(srv.requests)
            wait_for(lambda: len(srv.requests) > seen, timeout=60, interval=0.02, what="a poll")
            killed_at = time.monotonic()
            owner.kill()
            seen = len(srv.requests)
            wait_for(lambda: len(srv.requests) > seen, timeout=180, interval=0.02, what="the feed polled again")
            return time.monotonic() - killed_at
        finally:
            run.close()


def run(settings_or_args: Any = None) -> dict:
    opts = settings_or_args if isinstance(settings_or_args, argparse.Namespace) and \
        hasattr(settings_or_args, "handovers") else _parser().parse_args([])
    texts = _texts(opts.posts)
    classify = [classify_throughput(opts, n, texts) for n in (1, 2)]
    alerts = [round(alerts_handover(opts), 2) for _ in range(opts.handovers)]
    connector = [round(connector_handover(opts), 2) for _ in range(opts.handovers)]
    return {"classify": classify, "cpu_cores": os.cpu_count(),
            "two_over_one": round(classify[1]["posts_per_s"] / classify[0]["posts_per_s"], 2),
            "alerts_handover_s": alerts, "alerts_handover_median_s": statistics.median(alerts),
            "connector_handover_s": connector, "connector_handover_median_s": statistics.median(connector),
            "connector_session_timeout": SESSION_TIMEOUT, "connector_poll_interval": POLL_INTERVAL}


def section(r: dict) -> list[str]:
    """BENCHMARKS.md's scale-out section."""
    one, two = r["classify"]
    out = ["## Scale-out: classify workers, and handovers after `kill -9`", "",
           f"The same {one['posts']} posts (20–60 tokens, `classify.scope: all`) through 1, then 2, "
           "`lyssna serve classify` processes in one consumer group, timed from the first post produced to "
           f"the last one classified. This machine has {r['cpu_cores']} cores: two workers share them, so "
           "the second adds what the cores leave, not a second machine's worth.", "",
           "| workers | posts/s | seconds | posts per worker | load average at start |",
           "| --- | --- | --- | --- | --- |"]
    out += [f"| {c['workers']} | {c['posts_per_s']} | {c['seconds']} | {c['posts_per_worker']} | "
            f"{c.get('load_avg_1m_at_start')} |" for c in (one, two)]
    out += ["", f"**2 workers / 1 worker = {r['two_over_one']}** on {r['cpu_cores']} cores. Each worker runs "
                "the encoder on the machine's cores, so on an idle machine two workers share the same "
                "cores and add little; on a busy, shared machine two processes also win a larger share "
                "of the CPU from the other load, which can show as a gain that only a second machine, not "
                "a second process, gives for real (see the load average). The classify benchmark above "
                "is the single-process figure without Kafka.", "",
            "| handover after `kill -9` | runs (s) | median (s) |", "| --- | --- | --- |",
            f"| alerts: the survivor judges every partition (counting app's session timeout 15 s) | "
            f"{r['alerts_handover_s']} | {r['alerts_handover_median_s']} |",
            f"| connector: the feed polled again by the other ingest replica (session timeout "
            f"{r['connector_session_timeout']}, polled every {r['connector_poll_interval']}) | "
            f"{r['connector_handover_s']} | {r['connector_handover_median_s']} |", ""]
    return out


if __name__ == "__main__":
    print(json.dumps(run(_parser().parse_args()), indent=2))
