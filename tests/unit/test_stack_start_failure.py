"""Restarting a killed service, and one that dies while starting: kill() returns
only once the process is gone for good, and the error says how a process ended,
since one killed by a signal writes nothing to its own log."""

import faulthandler
import os
import sys
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from lyssna import cli
from lyssna.local.stack import ManagedService, StackError


def _service(tmp_path, code: str) -> ManagedService:
    svc = ManagedService("classify", port=1, env=dict(os.environ), config=None,
                         pidfile=tmp_path / "classify.pid", logfile=tmp_path / "classify.log")
    # A stand-in for `lyssna serve classify` that ends the way a crashed one would.
    svc.cmd = [sys.executable, "-c", code, "serve", "classify"]
    return svc


@pytest.mark.parametrize("code, said", [
    ("import os, signal; print('loading', flush=True); os.kill(os.getpid(), signal.SIGSEGV)",
     "(killed by SIGSEGV)"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "(killed by SIGKILL: out of memory? see `dmesg`)"),
    ("raise SystemExit(3)", "(exit code 3)"),
])
def test_exited_during_start_up_says_how(tmp_path, code, said):
    svc = _service(tmp_path, code)
    svc.start()
    with pytest.raises(StackError) as e:
        svc.wait_ready(timeout=60)
    assert f"classify exited during start-up {said}" in str(e.value)
    assert not svc.running()


def test_serve_enables_the_fault_handler_before_the_service_runs(monkeypatch):
    seen = []

    fake = types.ModuleType("lyssna.classify.service")
    fake.run = lambda settings: seen.append(faulthandler.is_enabled())
    monkeypatch.setattr(cli, "_settings", lambda config: object())
    monkeypatch.setitem(sys.modules, "lyssna.classify.service", fake)
    was = faulthandler.is_enabled()
    try:
        faulthandler.disable()
        result = CliRunner().invoke(cli.main, ["serve", "classify"])
    finally:
        if was:
            faulthandler.enable()
        else:
            faulthandler.disable()
    assert result.exit_code == 0, result.output
    assert seen == [True]


# Threads busy in native code and a large address space: after SIGKILL its first
# thread is a zombie for a while before the others are done exiting, as with a
# classify process killed mid-batch.
_BUSY = """
import threading, time, numpy as np
def work():
    a = np.random.rand(400, 400)
    while True:
        a @ a
for _ in range(6):
    threading.Thread(target=work, daemon=True).start()
memory = bytearray(600 * 2**20)
for i in range(0, len(memory), 4096):
    memory[i] = 1
print('ready', flush=True)
time.sleep(600)
"""


def test_kill_returns_once_the_process_is_gone_and_start_then_starts_a_new_one(tmp_path):
    svc = _service(tmp_path, _BUSY)
    try:
        for _ in range(4):
            old = svc.start()
            deadline = time.monotonic() + 60
            while "ready" not in svc.log_tail() and time.monotonic() < deadline:
                time.sleep(0.05)
            (tmp_path / "classify.log").write_text("")
            svc.kill()
            # Gone, not a zombie whose other threads still hold its port and memory.
            assert not Path(f"/proc/{old}").exists()
            new = svc.start()
            assert new != old, "start() took the killed process for a running one"
            svc.kill()
    finally:
        svc.kill()
