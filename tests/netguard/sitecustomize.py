"""Loaded by every Python process started with this folder on PYTHONPATH: the
processes a test starts get the same loopback-only guard as the test itself."""

import os

if os.environ.get("LYSSNA_TEST_NET_LOG"):
    import loopback_only

    loopback_only.install()
