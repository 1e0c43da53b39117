"""``lyssna demo`` (``make run``): the whole stack, a replayed demo feed, and a live
view of the classified mentions and of each alert as a local receiver gets it.

Every run is independent of the ones before. A replay that met an earlier
run's state would be quietly wrong: the file connector's cursor and the dedup
keys in Redis would say every demo post was already seen, the alerts' counts
(a Faust changelog) and cooldowns would still hold the last run's burst, and
consumers would resume at old offsets. So each run gets fresh topic names, app
ids (consumer groups, Faust's internal topics) and Redis prefix, and what
earlier demo runs left behind (all of it under ``lyssna.demo.`` /
``lyssna-demo-`` / ``lyssna:demo:``) is deleted at start and again on exit.
Deleting instead of reusing fixed names also means a run killed with SIGKILL
costs nothing but disk until the next one.

The demo feed's timestamps are from the day it was written; the rules judge
the window that is current now, so the feed is rebased to start now and its
gaps are divided by ``speedup`` (the connector then replays in real time).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import yaml

from .cleanup import drop_namespace
from .stack import LOCAL, ROOT, Stack, StackError, default_env, new_webhook_secret

DEMO_CONFIG = ROOT / "deploy" / "demo" / "lyssna.demo.yaml"
DEMO_POSTS = ROOT / "deploy" / "demo" / "posts.jsonl"
TOPIC_PREFIX = "lyssna.demo."
APP_PREFIX = "lyssna-demo-"
REDIS_PREFIX = "lyssna:demo:"
SECRET_ENV = "LYSSNA_WEBHOOK_SECRET"


def rebase_posts(src: Path, dst: Path, *, start: datetime, speedup: float) -> tuple[int, float]:
    """Write ``src`` to ``dst`` with created_at moved to ``start`` and gaps divided by
    ``speedup``; return (posts, seconds the replay takes)."""
    lines = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    times = [datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")) for p in lines]
    t0 = min(times)
    with open(dst, "w", encoding="utf-8") as f:
        for post, t in zip(lines, times):
            post["created_at"] = (start + (t - t0) / speedup).isoformat().replace("+00:00", "Z")
            f.write(json.dumps(post, ensure_ascii=False) + "\n")
    return len(lines), (max(times) - t0).total_seconds() / speedup


def cleanup_previous(bootstrap: str, redis_url: str, echo: Callable[[str], None]) -> None:
    """Delete every demo run's topics (ours and Faust's) and Redis keys."""
    topics, keys = drop_namespace(bootstrap, redis_url, (TOPIC_PREFIX, APP_PREFIX), REDIS_PREFIX,
                                  client_id="lyssna-demo-cleanup")
    if topics or keys:
        echo(f"removed what earlier demo runs left: {topics} topics, {keys} Redis keys")


def demo_files(run_dir: Path, *, speedup: float | None, start: datetime) -> tuple[Path, float, float]:
    """The run's config: the demo config with its replay file swapped for the rebased
    one. Returns (config, speed-up used, seconds the replay takes)."""
    doc = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    posts = run_dir / "posts.jsonl"
    duration = 0.0
    for source in doc.get("sources", []):
        if source.get("type") == "file":
            speedup = speedup or source.get("speedup") or 60.0
            _, duration = rebase_posts(DEMO_POSTS, posts, start=start, speedup=speedup)
            source["path"] = str(posts)
            source["speedup"] = 1  # the timestamps are already compressed
    config = run_dir / "lyssna.demo.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return config, speedup or 1.0, duration


def run_env(run_id: str) -> dict[str, str]:
    return {
        "LYSSNA_TOPIC_POSTS_RAW": f"{TOPIC_PREFIX}{run_id}.posts.raw",
        "LYSSNA_TOPIC_POSTS_CLASSIFIED": f"{TOPIC_PREFIX}{run_id}.posts.classified",
        "LYSSNA_TOPIC_ALERTS_EVENTS": f"{TOPIC_PREFIX}{run_id}.alerts.events",
        "LYSSNA_TOPIC_DEADLETTER": f"{TOPIC_PREFIX}{run_id}.deadletter",
        "LYSSNA_CLASSIFY_APP_ID": f"{APP_PREFIX}{run_id}-classify",
        "LYSSNA_ALERTS_APP_ID": f"{APP_PREFIX}{run_id}-alerts",
        "LYSSNA_REDIS_PREFIX": f"{REDIS_PREFIX}{run_id}:",
    }


def mention_line(post) -> str:
    text = " ".join(post.text.split())
    text = text if len(text) <= 60 else text[:59] + "…"
    orgs = ",".join(post.orgs) or "-"
    topics = ",".join(post.topics) or "-"
    stamp = post.event_time.astimezone().strftime("%H:%M:%S")
    return f"{stamp} {post.lang:<2} {orgs[:22]:<22} {topics[:28]:<28} {post.sentiment:<8} {text}"


def alert_line(rec) -> str:
    mark = {True: "signature verified", False: f"BAD SIGNATURE ({rec.verify_error})",
            None: "unsigned"}[rec.verified]
    try:
        doc = rec.json
    except ValueError:
        doc = {}
    stamp = time.strftime("%H:%M:%S", time.localtime(rec.received_at))
    org = doc.get("organization")
    org = org.get("name") if isinstance(org, dict) else org
    rule = doc.get("rule")
    rule = rule.get("name") if isinstance(rule, dict) else rule
    return (f"{stamp} ALERT {doc.get('type', '?')} rule={rule} org={org} count={doc.get('count')} "
            f"webhook-id={rec.webhook_id} — {mark}")


def _watch_classified(bootstrap: str, topic: str, stop: threading.Event, out: Callable[[str], None],
                      seen: list[int]) -> None:
    from kafka import KafkaConsumer

    from lyssna.common.contracts import ClassifiedPost

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=500)
    try:
        while not stop.is_set():
            for msg in consumer:
                try:
                    post = ClassifiedPost.from_bytes(msg.value)
                except ValueError:
                    continue
                seen[0] += 1
                out(mention_line(post))
                if stop.is_set():
                    break
    finally:
        consumer.close()


def run_demo(*, speedup: float | None = None, echo: Callable[[str], None] | None = None) -> int:
    from .receiver import WebhookReceiver

    lock = threading.Lock()

    def say(msg: str) -> None:
        with lock:
            print(msg, flush=True)

    echo = echo or say
    # SIGTERM (make killed, a closed terminal) stops the demo like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # A process started in the background by a shell without job control (`make run &`,
    # nohup, some CI runners) inherits SIGINT ignored, and Python then never installs its
    # Ctrl-C handler: a SIGINT would be dropped and the services left running.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    run_id = datetime.now().strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
    run_dir = LOCAL / "demo" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    start = datetime.now(timezone.utc) + timedelta(seconds=5)
    config, speedup, duration = demo_files(run_dir, speedup=speedup, start=start)
    secret = new_webhook_secret()
    env = {**default_env(config, echo), **run_env(run_id), SECRET_ENV: secret}
    stack = Stack(config=config, env=env, name="demo", log_dir=run_dir / "logs")
    s = stack.settings
    hook_url = urlparse(s.webhooks[0].url)

    stop = threading.Event()
    seen = [0]
    alerts: list = []

    def on_alert(rec) -> None:
        alerts.append(rec)
        say(alert_line(rec))

    receiver = WebhookReceiver(secret, host=hook_url.hostname, port=hook_url.port or 80,
                               path=hook_url.path or "/", on_request=on_alert)
    watcher = None
    try:
        echo(f"Lyssna demo {run_id}: {DEMO_POSTS.relative_to(ROOT)} replayed {speedup:g}x faster "
             f"(about {duration / 60:.1f} min), rules from {DEMO_CONFIG.relative_to(ROOT)}")
        echo("starting Kafka, Redis and the services (the first start loads the model; up to a few minutes)")
        from .stack import Infra

        Infra(s.kafka.bootstrap_servers, s.redis.url).up(lambda m: echo(f"  {m}"))
        cleanup_previous(s.kafka.bootstrap_servers, s.redis.url, echo)
        try:
            receiver.start()
        except OSError as e:
            raise StackError(f"the demo receiver cannot listen on {hook_url.netloc}: {e.strerror}. "
                             f"Fix: free the port or change the webhook url in {DEMO_CONFIG}") from None
        # Rebased again just before ingest starts replaying, so the posts' times are "now".
        rebase_posts(DEMO_POSTS, run_dir / "posts.jsonl", speedup=speedup,
                     start=datetime.now(timezone.utc) + timedelta(seconds=2))
        stack.up(lambda m: echo(f"  {m}"), infra=False)
        echo(f"\nLyssna is up:\n{stack.where()}\n  webhook receiver {receiver.url} (checks signatures)\n"
             f"  API key: $LYSSNA_API_KEY or .local/api-key\n")
        echo("time     lang orgs                   topics                       sentiment text")
        watcher = threading.Thread(target=_watch_classified, daemon=True, name="demo-watch",
                                   args=(s.kafka.bootstrap_servers, s.kafka.topics.posts_classified, stop, say, seen))
        watcher.start()
        while True:
            time.sleep(1)
            for svc in stack.services.values():
                if not svc.running():
                    raise StackError(f"{svc.service} stopped; last lines of {svc.logfile}:\n{svc.log_tail()}")
    except KeyboardInterrupt:
        echo("\nstopping…")
        return_code = 0
    except StackError as e:
        echo(f"lyssna demo: {e}")
        return_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        stop.set()
        if watcher is not None:
            watcher.join(timeout=5)
        stack.down(lambda m: echo(f"  {m}"))
        receiver.stop()
        try:
            cleanup_previous(s.kafka.bootstrap_servers, s.redis.url, lambda m: None)
        except Exception as e:  # noqa: BLE001 - the next run deletes it
            echo(f"  (left demo topics behind: {e})")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    echo(f"demo stopped: {seen[0]} mentions classified, {len(alerts)} alert deliveries received "
         f"({sum(1 for a in alerts if a.verified)} verified). Logs: {run_dir.relative_to(ROOT)}/logs")
    return return_code
