"""Prometheus metrics of the ingest service, in a registry of its own so several
app instances (tests, the benchmark) never collide in the global one.

The ``source`` label is the channel a post arrived through (http, rss, mastodon,
bluesky, file), never a caller-supplied value, so its cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lyssna.common.metrics import ServiceMetrics

OUTCOMES = ("accepted", "duplicate", "rejected")


class IngestMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None):
        super().__init__("ingest", registry)
        r = self.registry
        self.received = Counter("lyssna_ingest_posts_received", "Posts received, by channel",
                                ["source"], registry=r)
        self.posts = Counter("lyssna_ingest_posts", "Posts by outcome (accepted, duplicate, rejected)",
                             ["source", "outcome"], registry=r)
        self.produce_latency = Histogram(
            "lyssna_ingest_produce_latency_seconds",
            "One Kafka produce of a batch, from the first send until every record is acknowledged",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r)
        self.created_at_replaced = Counter(
            "lyssna_ingest_created_at_replaced",
            "Posts whose created_at was in the future or implausibly old (reason), replaced by the fetch time",
            ["source", "reason"], registry=r)
        self.connector_errors = Counter("lyssna_ingest_connector_errors",
                                        "Failed fetches or connections of a connector",
                                        ["connector"], registry=r)
        self.connector_last_success = Gauge(
            "lyssna_ingest_connector_last_success_timestamp_seconds",
            "Unix time of a connector's last successful fetch", ["connector"], registry=r)

    def count(self, source: str, outcomes: dict[str, int]) -> None:
        for outcome, n in outcomes.items():
            if n:
                self.posts.labels(source, outcome).inc(n)
