"""Ingest: posts from anywhere into ``lyssna.posts.raw``.

``service.IngestService`` is the process: the push API (``app``) and the pull
connectors (``runner`` over ``connectors/``, one module per source type, found
by type in a registry) share one ``pipeline``: normalize (``normalize``), dedup
in Redis (``dedup``), produce with ``acks=all`` (``producer``), answer per item.
"""
