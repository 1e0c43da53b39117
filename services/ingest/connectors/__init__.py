"""Pull connectors, one module per source type, behind one small interface.

Each module defines a :class:`~.base.Connector` for one ``sources[].type`` and
registers it (``@register``); the runner finds it in :data:`~.base.CONNECTORS`
by that type. A new source type is a new module here, listed below, plus its
config model in ``lyssna.common.config`` (``SourceConfig``).
"""

from . import bluesky, jsonl, mastodon, rss  # noqa: F401  (each registers its connector)
from .base import CONNECTORS

__all__ = ["CONNECTORS"]
