"""Alerts: windowed rules over classified mentions and signed webhook delivery.

``service.AlertsService`` wires the pipeline: ``counts`` (a Faust table of
per-organization buckets) -> ``engine`` judges the ``rules`` (pure) on a timer
-> alert events through ``outbox`` (Kafka) -> ``outbox_reader`` makes delivery
records -> ``delivery`` (load -> gate -> send -> settle; ``payloads``,
``signing``, ``retry``) -> the webhooks. State lives in Redis (``store``); the
HTTP API is ``api/`` (one router per resource).
"""
