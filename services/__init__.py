"""Lyssna: mention monitoring for HR teams.

The folder tree is the architecture: ``common`` holds the contracts and settings
every service imports; ``ingest``, ``classify`` and ``alerts`` are the services.
"""

__version__ = "0.1.0"
