"""What every service's metrics share: an own registry (so several instances in
one process, as in tests, never add up), the dead-letter counter, consumer lag,
and the exposition."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector, generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.responses import Response

from .kafka_admin import known_drift


class PrometheusResponse(Response):
    """The answer of /metrics; as a response class it puts the exposition's real
    content type, not JSON, in the OpenAPI document."""
    media_type = CONTENT_TYPE_LATEST


class RetentionDriftCollector:
    """Topics found at start to keep records longer than the ``retention`` section says
    (``lyssna.common.kafka_admin``); -1 (forever) shows as +Inf. No series: no drift."""

    def __init__(self, service: str):
        self.service = service

    def collect(self):
        g = GaugeMetricFamily("lyssna_kafka_topic_retention_drift_seconds",
                              "How much longer than configured a Lyssna topic keeps its records.",
                              labels=["service", "topic"])
        for d in known_drift():
            g.add_metric([self.service, d.topic], d.excess_seconds)
        yield g


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service: str, registry: CollectorRegistry | None = None):
        self.service = service
        self.registry = registry or CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.deadletters = Counter("lyssna_deadletter_records_total", "Records sent to the dead-letter topic.",
                                   ["service"], registry=self.registry)
        self.deadletters.labels(service)
        self.consumer_lag = Gauge("lyssna_consumer_lag_messages",
                                  "Records in the topic not yet committed by the service's consumer group.",
                                  ["service", "topic"], registry=self.registry)
        self.registry.register(RetentionDriftCollector(service))

    def set_lag(self, topic: str, lag: int) -> None:
        self.consumer_lag.labels(self.service, topic).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (0 when never set); for tests and the benchmark."""
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v
