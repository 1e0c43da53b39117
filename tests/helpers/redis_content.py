"""Read every key under a prefix of the real Redis, whatever its type, to find where
given texts are stored (the privacy tests)."""

from __future__ import annotations

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class StoredKey:
    key: str
    type: str
    ttl: int  # seconds; -1: no expiry
    blob: str  # every member, field and value, joined

    def holds(self, text: str) -> bool:
        return text in self.blob


def _values(client: redis.Redis, key: bytes, kind: str) -> list[bytes]:
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "hash":
        return [x for kv in client.hgetall(key).items() for x in kv]
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    return []


def stored_keys(redis_url: str, prefix: str) -> list[StoredKey]:
    client = redis.Redis.from_url(redis_url)
    try:
        out = []
        for key in client.scan_iter(f"{prefix}*", count=1000):
            kind = client.type(key).decode()
            blob = "\x00".join(v.decode("utf-8", "replace") for v in [key, *_values(client, key, kind)])
            out.append(StoredKey(key.decode(), kind, client.ttl(key), blob))
        return out
    finally:
        client.close()


def keys_holding(keys: list[StoredKey], texts: list[str]) -> dict[str, list[str]]:
    """Key -> which of ``texts`` it holds (only keys that hold any)."""
    found = {k.key: [t for t in texts if k.holds(t)] for k in keys}
    return {k: v for k, v in found.items() if v}
