"""`make run` itself: `lyssna demo` brings the stack up, shows classified mentions
and at least one alert whose signature the demo receiver verified, and stops
cleanly on Ctrl-C (SIGINT), with its summary line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.kafka_io import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_the_demo_shows_mentions_and_a_verified_alert_and_stops_cleanly(infra):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url}
    env.pop("LYSSNA_CONFIG", None)
    # Started with SIGINT ignored, as a shell without job control starts a background
    # command (`make run &`, nohup, some CI runners): Ctrl-C must still stop it.
    proc = subprocess.Popen([sys.executable, "-m", "lyssna.cli", "demo", "--speedup", "600"], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 420  # the first start loads the model
        while not any("ALERT alert.firing" in line and "signature verified" in line for line in list(lines)):
            assert proc.poll() is None, "the demo stopped on its own:\n" + "".join(lines[-40:])
            assert time.monotonic() < deadline, "no verified alert from the demo:\n" + "".join(lines[-40:])
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(10)
    out = "".join(lines)
    assert code == 0, out[-3000:]
    assert "Lyssna is up:" in out and "stopping…" in out
    summary = re.search(r"demo stopped: (\d+) mentions classified, (\d+) alert deliveries received \((\d+) verified\)",
                        out)
    assert summary, out[-3000:]
    mentions, deliveries, verified = map(int, summary.groups())
    assert mentions > 0 and deliveries >= 1 and verified == deliveries
