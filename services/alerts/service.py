"""The alerts process: Faust counting, rule evaluation, webhook delivery and the API
in one asyncio loop.

Start-up checks the configuration before touching anything: every webhook
URL must be safe (:mod:`lyssna.common.urlsafety`), every ``secret_env`` must hold valid
``whsec_`` secrets, every config rule must fit the counts. SIGTERM or SIGINT
stop it cleanly (Faust commits, in-flight deliveries are cancelled and stay
queued); after SIGKILL, Kafka offsets, the changelog and the Redis state let
the next start continue where this one was.

Run as many replicas as you like with one ``alerts.app_id``: Faust's consumer
group gives each the organizations of some mentions partitions to count and
judge (:mod:`.ownership`); when one dies, the others take its partitions over
from the changelog once its Kafka session ends. The outbox reader shares the
events topic through its own group, and every replica's delivery worker takes
deliveries from the one Redis queue under a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Callable, Mapping

from redis.asyncio import Redis

from lyssna.common.config import ConfigError, Settings
from lyssna.common.kafka_admin import ensure_topics
from lyssna.common.redis_policy import refuse_evicting_redis
from lyssna.common.logs import setup_logging
from lyssna.common.runtime import EmbeddedServer, StopDeadline, first_crash, run_until_signal, watch_lag
from lyssna.common.urlsafety import (AddressPolicy, UnsafeWebhookURL, WebhookURLResolutionError, check_webhook_url,
                                     why_not_public)

from .api import ApiContext, create_app
from .counts import DistinctAuthorsCollector, MentionCounter
from .delivery import DeliveryWorker, mask_url
from .engine import DirtyOrgs, Engine
from .metrics import SERVICE, AlertsMetrics
from .outbox import AlertEventPublisher
from .outbox_reader import OutboxReader
from .retry import RetrySchedule
from .ruleset import RuleError, check_rule
from .signing import SecretError, parse_secrets
from .store import AlertsStore

log = logging.getLogger("lyssna.alerts")

LAG_INTERVAL_S = 15


def check_settings(settings: Settings, *, env: Mapping[str, str] = os.environ,
                   resolver: Callable = socket.getaddrinfo,
                   address_policy: AddressPolicy = why_not_public) -> dict[str, list[str]]:
    """Refuse what cannot run; return each webhook's signing secrets.

    Raises :class:`ConfigError` listing every problem with its fix. A webhook
    host that does not resolve right now is only logged: DNS may come back,
    and delivery checks again (and retries) before every attempt.
    """
    problems: list[str] = []
    secrets: dict[str, list[str]] = {}
    for i, w in enumerate(settings.webhooks):
        where = f"webhooks[{i}] ({w.name})"
        try:
            check_webhook_url(w.url, w.allow_private_network, resolver=resolver, address_policy=address_policy)
        except UnsafeWebhookURL as e:
            problems.append(f"{where}.url: {str(e).replace(w.url, mask_url(w.url))}")
        except WebhookURLResolutionError as e:
            log.warning("webhook host does not resolve now; deliveries will retry",
                        extra={"webhook": w.name, "error": str(e)})
        if w.secret_env:
            try:
                secrets[w.name] = parse_secrets(env.get(w.secret_env), env_name=w.secret_env)
            except SecretError as e:
                problems.append(f"{where}.secret_env: {e}")
    for i, rule in enumerate(settings.rules):
        try:
            check_rule(rule, settings)
        except RuleError as e:
            problems.append(f"rules[{i}]: {e}")
    try:
        RetrySchedule(settings.alerts.retry_schedule)
    except ValueError as e:
        problems.append(f"alerts.retry_schedule: {e}")
    if problems:
        raise ConfigError("alerts cannot start:\n  " + "\n  ".join(problems))
    return secrets


class AlertsService:
    def __init__(self, settings: Settings, *, env: Mapping[str, str] | None = None,
                 resolver: Callable = socket.getaddrinfo, address_policy: AddressPolicy = why_not_public,
                 serve_api: bool = True):
        self.settings = settings
        self.env = os.environ if env is None else env
        self.resolver = resolver
        self.address_policy = address_policy
        self.serve_api = serve_api
        self.metrics = AlertsMetrics()
        self._tasks: dict[str, asyncio.Task] = {}
        self._started: list = []
        self.api_server: EmbeddedServer | None = None
        self.redis: Redis | None = None
        self.worker: DeliveryWorker | None = None

    async def start(self) -> None:
        secrets = check_settings(self.settings, env=self.env, resolver=self.resolver,
                                 address_policy=self.address_policy)
        try:
            await self._start(secrets)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, secrets: dict[str, list[str]]) -> None:
        s = self.settings
        topics = s.kafka.topics
        await asyncio.to_thread(ensure_topics, s.kafka.bootstrap_servers,
                                [topics.posts_classified, topics.alerts_events, topics.deadletter],
                                **s.kafka.topic_layout())
        self.redis = Redis.from_url(s.redis.url, socket_timeout=10, socket_connect_timeout=5,
                                    health_check_interval=30)
        await refuse_evicting_redis(self.redis, "alerts")
        self.store = AlertsStore(self.redis, s.redis.key_prefix, history_retention=s.retention.alert_history,
                                 sample_retention=s.retention.sample_texts)
        await self.store.drop_legacy_samples()
        schedule = RetrySchedule(s.alerts.retry_schedule)

        self.outbox = AlertEventPublisher(s)
        await self.outbox.start()
        self._started.append(self.outbox)

        self.worker = DeliveryWorker(s, self.store, self.outbox, self.metrics, schedule, secrets,
                                     resolver=self.resolver, address_policy=self.address_policy)
        self.reader = OutboxReader(s, self.store, self.outbox, self.metrics, schedule,
                                   on_queued=self.worker.wake)
        dirty = DirtyOrgs()  # counter -> engine, so neither needs the other to exist first
        self.counter = MentionCounter(s, on_counted=dirty.mark, save_sample=self.store.add_sample,
                                      on_deadletter=lambda: self.metrics.deadletters.labels(SERVICE).inc())
        self.engine = Engine(s, self.store, self.counter.counts, self.outbox, self.metrics,
                             ready=self.counter.ready, dirty=dirty, ownership=self.counter.ownership)
        self.metrics.declare([r.name for r in s.rules], [w.name for w in s.webhooks])
        self.metrics.registry.register(DistinctAuthorsCollector(self.counter.counts))

        await self.reader.start()
        self._started.append(self.reader)
        self._started.append(self.counter)

        self.api = create_app(ApiContext(s, self.store, self.metrics, self.readiness))
        self._tasks["counts"] = asyncio.create_task(self.counter.run(), name="alerts-counts")
        self._tasks["engine"] = asyncio.create_task(self.engine.run(), name="alerts-engine")
        self._tasks["outbox-reader"] = asyncio.create_task(self.reader.run(), name="alerts-outbox-reader")
        self._tasks["delivery"] = asyncio.create_task(self.worker.run(), name="alerts-delivery")
        groups = {s.kafka.topics.posts_classified: s.alerts.app_id,
                  s.kafka.topics.alerts_events: f"{s.alerts.app_id}-delivery"}
        self._tasks["lag"] = asyncio.create_task(watch_lag(
            s.kafka.bootstrap_servers, groups,
            self.metrics.set_lag,
            client_id=f"{s.alerts.app_id}-lag", interval_s=LAG_INTERVAL_S), name="alerts-lag")
        if self.serve_api:
            # Bound here rather than by uvicorn, which answers a port in use with sys.exit.
            sock = socket.socket(socket.AF_INET6 if ":" in s.alerts.host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((s.alerts.host, s.alerts.port))
            except OSError as e:
                sock.close()
                raise ConfigError(f"alerts API cannot listen on {s.alerts.host}:{s.alerts.port}: {e.strerror}. "
                                  f"Fix: stop what uses the port or set LYSSNA_ALERTS_PORT") from None
            self.api_server = EmbeddedServer.for_app(self.api, s.alerts.host, s.alerts.port)
            api_task = self._tasks["api"] = asyncio.create_task(self.api_server.serve(sockets=[sock]),
                                                                name="alerts-api")
            while not self.api_server.started and not api_task.done():
                await asyncio.sleep(0.05)
        log.info("alerts started", extra={"app_id": s.alerts.app_id, "port": s.alerts.port,
                                          "rules": len(s.rules), "webhooks": len(s.webhooks)})

    async def readiness(self) -> dict[str, str]:
        checks = {}
        try:
            await asyncio.wait_for(self.store.ping(), timeout=3)
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"unreachable: {type(e).__name__}"
        try:
            await asyncio.wait_for(self.outbox.kafka_reachable(), timeout=5)
            checks["kafka"] = "ok"
        except Exception as e:
            checks["kafka"] = f"unreachable: {type(e).__name__}"
        checks["counts"] = "ok" if self.counter.ready() else "recovering window counts from the changelog"
        for name, task in self._tasks.items():
            if task.done():
                checks[name] = "stopped"
        return checks

    async def wait(self) -> None:
        """Return when a component stopped on its own (a crash): the process should exit."""
        await first_crash(self._tasks, log)

    async def stop(self) -> None:
        deadline = StopDeadline(log)
        if self.api_server is not None and "api" in self._tasks:
            self.api_server.should_exit = True
            await deadline.tasks("api", [self._tasks["api"]])
        for task in self._tasks.values():
            task.cancel()
        await deadline.tasks("tasks", self._tasks.values())
        self._tasks.clear()
        if self.worker is not None:
            await deadline.step("delivery", self.worker.stop())
        for component in reversed(self._started):
            await deadline.step(type(component).__name__, component.stop())
        self._started.clear()
        if self.redis is not None:
            await deadline.step("redis", self.redis.aclose())
            self.redis = None
        log.info("alerts stopped")


def run(settings: Settings) -> None:
    setup_logging(SERVICE)
    service = AlertsService(settings)
    try:
        asyncio.run(run_until_signal(service.start, service.wait, service.stop))
    except ConfigError as e:
        print(f"lyssna: {e}", file=sys.stderr)
        sys.exit(2)
