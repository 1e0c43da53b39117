"""Refuse a Redis that may evict keys.

Ingest keeps dedup reservations and connector cursors in Redis, alerts keeps
alert state, the delivery log and pending retries there. Under any eviction
policy but ``noeviction`` a full Redis silently drops some of them: duplicates
pass, cursors restart, a firing alert is forgotten, a retry never happens. With
``noeviction`` a full Redis refuses writes instead, which the services see and
report. So they do not start on an evicting Redis.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError, ResponseError

from .config import ConfigError

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


def eviction_problem(policy: str | None, service: str) -> str | None:
    """What is wrong with ``policy`` for ``service``, with the fix, or None."""
    if policy is None or policy == SAFE_POLICY:
        return None
    return (f"{service} cannot start: Redis maxmemory-policy is {policy!r}, so a full Redis would silently "
            f"evict {service}'s state. Fix: set 'maxmemory-policy {SAFE_POLICY}' in redis.conf (or run "
            f"'CONFIG SET maxmemory-policy {SAFE_POLICY}'), or give Lyssna its own Redis")


async def refuse_evicting_redis(client, service: str) -> None:
    """Raise :class:`ConfigError` when ``client``'s Redis may evict keys.

    A Redis that does not allow CONFIG (some managed offerings) or is not up
    yet cannot be asked; that is logged, and the service starts.
    """
    try:
        answer = await client.config_get("maxmemory-policy")
    except ResponseError as e:
        log.warning("cannot read Redis maxmemory-policy; make sure it is noeviction",
                    extra={"error": type(e).__name__})
        return
    except (RedisError, OSError) as e:
        log.warning("Redis not reachable at start-up; its eviction policy is not checked",
                    extra={"error": type(e).__name__})
        return
    policy = answer.get("maxmemory-policy") or answer.get(b"maxmemory-policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    problem = eviction_problem(policy, service)
    if problem:
        raise ConfigError(problem)
