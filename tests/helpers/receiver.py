"""Moved to lyssna.local.receiver (services/local/receiver.py): `make run` uses it too and
production code must not import from tests/. Kept so existing imports keep working."""

from lyssna.local.receiver import Received, Reply, WebhookReceiver, main  # noqa: F401

if __name__ == "__main__":
    main()
