"""Process plumbing shared by the long-running services: the HTTP server inside
the service's own event loop, consumer-lag measurement and signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping

import uvicorn

log = logging.getLogger("lyssna.runtime")


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a service's loop. The process, not uvicorn, owns SIGTERM and
    SIGINT: uvicorn would otherwise stop only itself and re-raise the signal."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    @classmethod
    def for_app(cls, app, host: str, port: int) -> "EmbeddedServer":
        return cls(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                  lifespan="off"))


async def group_lag(admin, consumer, group: str, topic: str) -> int:
    """Sum over partitions of end offset minus the group's committed offset."""
    from aiokafka.structs import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.topics()  # refreshes metadata for every topic
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    if not tps:
        return 0
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    ends = await consumer.end_offsets(tps)
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, ends.get(tp, 0) - done)
    return lag


async def watch_lag(bootstrap_servers: str, groups: Mapping[str, str], set_lag: Callable[[str, int], None],
                    *, client_id: str, interval_s: float = 15) -> None:
    """Measure, every ``interval_s``, how far each group (topic -> group) is behind."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
    # No group: it only asks for end offsets.
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, client_id=client_id)
    await admin.start()
    await ends.start()
    try:
        while True:
            for topic, group in groups.items():
                try:
                    set_lag(topic, await group_lag(admin, ends, group, topic))
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.debug("could not measure consumer lag", extra={"topic": topic, "error": str(e)})
            await asyncio.sleep(interval_s)
    finally:
        await ends.stop()
        await admin.close()


# Under compose's stop_grace_period (30 s), after which the process gets SIGKILL.
STOP_BUDGET_S = 25.0


class StopDeadline:
    """One time budget for a whole shutdown, shared by its steps in order.

    A step that outlives what is left (a broker that stopped answering, Faust caught
    in the middle of a rebalance) is given up on with a warning, so the process still
    exits, cleanly and in time, instead of being killed by its supervisor. Nothing is
    lost by giving up: offsets not committed are read again, and deliveries and
    cursors live in Redis."""

    def __init__(self, logger: logging.Logger, budget_s: float = STOP_BUDGET_S):
        self.log = logger
        self.deadline = asyncio.get_running_loop().time() + budget_s

    async def step(self, what: str, aw: Awaitable) -> None:
        left = max(0.5, self.deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(aw, timeout=left)
        except asyncio.TimeoutError:
            self.log.warning("gave up waiting for a component to stop", extra={"component": what,
                                                                               "waited_s": round(left, 1)})
        except Exception:
            self.log.exception("error while stopping", extra={"component": what})

    async def tasks(self, what: str, tasks: Iterable[asyncio.Task]) -> None:
        """Wait for ``tasks`` (already cancelled or told to exit) to end."""
        tasks = list(tasks)
        if tasks:
            await self.step(what, asyncio.gather(*tasks, return_exceptions=True))


async def run_until_signal(start: Callable[[], Awaitable[None]], wait: Callable[[], Awaitable[None]],
                           stop: Callable[[], Awaitable[None]]) -> None:
    """Start, then stop cleanly on SIGTERM/SIGINT, or exit 1 when a component crashed
    (the supervisor - compose, systemd, make up - restarts the process)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before start: a SIGTERM while starting (a replica scaled down or rolled as it
    # starts) then stops it cleanly once started, not by the default action (143).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    stopper = asyncio.create_task(stopping.wait())
    crashed = asyncio.create_task(wait())
    await asyncio.wait({stopper, crashed}, return_when=asyncio.FIRST_COMPLETED)
    await stop()
    if crashed.done() and not stopping.is_set():
        sys.exit(1)


async def first_crash(tasks: Mapping[str, asyncio.Task], logger: logging.Logger) -> None:
    """Return when a component task stopped on its own, logging why."""
    done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error("component crashed", exc_info=task.exception(), extra={"component": task.get_name()})
