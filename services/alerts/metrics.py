"""Prometheus metrics of the alerts service (names shared with the dashboards).

Each service instance gets its own registry, so tests that run several
instances in one process do not add up each other's numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lyssna.common.metrics import ServiceMetrics


SERVICE = "alerts"
DELIVERY_OUTCOMES = ("delivered", "retry", "failed", "disabled", "silenced")
EVENT_STATES = ("firing", "resolved")

# From sub-second (receiver up, first attempt) to the end of the default retry
# schedule (about 11 hours).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600,
                   3 * 3600, 6 * 3600, 12 * 3600)


class AlertsMetrics(ServiceMetrics):
    def __init__(self, registry: CollectorRegistry | None = None):
        super().__init__(SERVICE, registry)
        r = self.registry
        self.events = Counter("lyssna_alerts_events_total", "Alert state changes written to the outbox.",
                              ["rule", "state"], registry=r)
        self.deliveries = Counter("lyssna_alerts_deliveries_total",
                                  "Webhook delivery decisions, one per attempt or skip.",
                                  ["webhook", "outcome"], registry=r)
        self.delivery_latency = Histogram("lyssna_alerts_delivery_latency_seconds",
                                          "From the alert event to the receiver's 2xx answer.",
                                          ["webhook"], buckets=LATENCY_BUCKETS, registry=r)
        self.retry_queue_depth = Gauge("lyssna_alerts_retry_queue_depth",
                                       "Deliveries waiting for their next attempt.", registry=r)

    def declare(self, rules: list[str], webhooks: list[str]) -> None:
        """Create the series of known rules and webhooks at zero, so dashboards
        show 0 rather than "No data" before the first alert."""
        for rule in rules:
            for state in EVENT_STATES:
                self.events.labels(rule, state)
        for hook in webhooks:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(hook, outcome)
            self.delivery_latency.labels(hook)
