"""The webhook body formats a receiver can ask for (``webhooks[].format`` in the config).

Only the names live here; each has its renderer in :mod:`lyssna.alerts.payloads`,
registered under the name. They are apart because the config, which every
service loads, validates the names and must not import the alerts service.
``payloads`` refuses, when it is imported, a renderer for a name missing here
and a name here without a renderer, so the two cannot drift apart.

A new format: add its name below, then a renderer in ``lyssna/alerts/payloads.py``
under ``@renderer("<name>")``.
"""

from __future__ import annotations

from typing import Literal

WEBHOOK_FORMATS = ("json", "slack", "teams", "alertmanager")

# The config's type for a format name: pydantic checks it and lists the names on a mistake.
WebhookFormat = Literal[WEBHOOK_FORMATS]  # type: ignore[valid-type]  # a Literal of the tuple's items
