"""The harness's loopback-only guard refuses, records and propagates.

No test here opens a socket to anything: ``sys.audit`` raises the same event a
real ``connect`` raises, so the guard is exercised without any traffic.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import loopback_only


@pytest.mark.parametrize("address", [("127.0.0.1", 9092), ("127.0.0.2", 80), ("::1", 6379, 0, 0),
                                     ("::ffff:127.0.0.1", 1), ("localhost", 8080), "/tmp/redis.sock"])
def test_loopback_and_unix_sockets_are_allowed(address):
    assert loopback_only.allowed(address)


@pytest.mark.parametrize("address", [("93.184.216.34", 80), ("10.0.0.1", 9092), ("192.168.1.1", 443),
                                     ("172.16.0.1", 80), ("169.254.169.254", 80), ("2001:db8::1", 80, 0, 0),
                                     ("::ffff:8.8.8.8", 53), ("example.com", 80), ("hooks.example.com", 443)])
def test_everything_else_is_refused(address):
    assert not loopback_only.allowed(address)


def test_a_connect_outside_loopback_raises_and_is_recorded(tmp_path, monkeypatch):
    log = tmp_path / "refused.log"
    monkeypatch.setenv(loopback_only.ENV_LOG, str(log))
    with pytest.raises(PermissionError, match="loopback"):
        sys.audit("socket.connect", None, ("203.0.113.5", 9))
    sys.audit("socket.connect", None, ("127.0.0.1", 9))  # allowed: no error, no record
    assert [line.split(" (pid")[0] for line in loopback_only.violations(str(log))] == [
        "socket.connect to ('203.0.113.5', 9)"]


def test_processes_started_by_tests_get_the_guard(tmp_path):
    log = tmp_path / "refused.log"
    env = {**os.environ, loopback_only.ENV_LOG: str(log)}
    code = "import sys; sys.audit('socket.sendto', None, b'x', ('198.51.100.7', 53))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "PermissionError" in done.stderr
    assert "198.51.100.7" in log.read_text()
