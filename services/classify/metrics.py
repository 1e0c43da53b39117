"""Prometheus metrics of the classify service (names shared with the dashboards)."""

from __future__ import annotations

import collections

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lyssna.common.metrics import ServiceMetrics

SERVICE = "classify"
# The ingest channels (lyssna.ingest.metrics); a post's source can be set by an API
# client, so anything else is "other" and the label's cardinality stays bounded.
CHANNELS = frozenset({"http", "rss", "mastodon", "bluesky", "file"})


def channel(source: str) -> str:
    kind = source.split(":", 1)[0]
    return kind if kind in CHANNELS else "other"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ClassifyMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None):
        super().__init__(SERVICE, registry)
        r = self.registry
        self.posts = Counter("lyssna_classify_posts_total", "Posts handled, by outcome.", ["outcome"], registry=r)
        self.batch = Histogram("lyssna_classify_batch_posts", "Posts per model batch.",
                               buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("lyssna_classify_inference_latency_seconds",
                                   "Time to classify one batch (language, mentions, transformer, heads).",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.mentions = Counter("lyssna_classify_mentions_total",
                                "Mentions of watched organizations, by topic (or none), sentiment and language.",
                                ["org", "topic", "sentiment", "lang"], registry=r)
        self.overruns = Counter("lyssna_classify_budget_overruns_total",
                                "Batches and posts not classified within their time budget.", registry=r)
        self.overrunning = Gauge("lyssna_classify_overrunning_threads",
                                 "Classification threads given up on past their budget and still running "
                                 "(they cannot be stopped; each one takes CPU until it ends).", registry=r)
        self.skipped = Counter("lyssna_classify_skipped_total",
                               "Posts without a watched organization, not run through the transformer "
                               "(classify.scope: mentions), by language and channel.",
                               ["lang", "channel"], registry=r)
        self.encoded = Counter("lyssna_classify_encoded_posts",
                               "Posts run through the transformer (warm-up excluded).", registry=r)
        for outcome in ("classified", "skipped", "deadletter"):
            self.posts.labels(outcome)

    def count_skipped(self, posts) -> None:
        # Once per label pair and batch: at firehose rates a call per post showed in profiles.
        for (lang, ch), n in collections.Counter((p.lang, channel(p.source)) for p in posts).items():
            self.skipped.labels(lang, ch).inc(n)

    def count_mentions(self, post) -> None:
        for org in post.orgs:
            for topic in post.topics or ["none"]:
                self.mentions.labels(org, str(topic), str(post.sentiment), post.lang).inc()
