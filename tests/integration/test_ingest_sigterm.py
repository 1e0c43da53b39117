"""`lyssna serve ingest` stops with exit status 0 on SIGTERM, also when the signal
comes while it is still starting (a replica scaled down or rolled while it starts):
an orchestrator reads 143 as a crash."""

import signal
import socket
import threading

import pytest

from tests.helpers.kafka_io import ServiceProcess, free_port, wait_for
from tests.helpers.ingest_support import API_KEY

pytestmark = pytest.mark.integration


class HeldRedis:
    """A loopback TCP relay to the real Redis that holds the first request of the
    first connection until ``release``: while it holds, ingest is inside its start
    (the Redis eviction-policy check is the first thing it does)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_request = threading.Event()
        self.released = threading.Event()
        self.buffered = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        self.buffered = client.recv(65536)
        self.first_request.set()
        self.released.wait()
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        upstream.sendall(self.buffered)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.listener.close()


def test_sigterm_while_starting_stops_cleanly_with_status_0(infra, topics, redis_prefix, tmp_path):
    redis_port = int(infra.redis_url.rsplit(":", 1)[1].split("/")[0])
    held = HeldRedis(redis_port)
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": f"redis://127.0.0.1:{held.port}/0",
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": API_KEY, "LYSSNA_AUTHOR_KEY": "k1:" + "a" * 40,
           "LYSSNA_INGEST_PORT": str(port), **topics.as_env()}
    svc = ServiceProcess("ingest", env, port=port, log_dir=tmp_path).start()
    try:
        wait_for(held.first_request.is_set, timeout=120, what="ingest's first Redis request (inside its start)")
        svc.proc.send_signal(signal.SIGTERM)
        held.release()
        rc = svc.proc.wait(timeout=60)
    finally:
        svc.stop()
        held.close()
    assert rc == 0, svc.log_tail()
    assert "ingest stopped" in svc.log_path.read_text()


def test_sigterm_when_running_stops_cleanly_with_status_0(infra, topics, redis_prefix, tmp_path):
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers, "REDIS_URL": infra.redis_url,
           "LYSSNA_REDIS_PREFIX": redis_prefix, "LYSSNA_API_KEY": API_KEY, "LYSSNA_AUTHOR_KEY": "k1:" + "a" * 40,
           "LYSSNA_INGEST_PORT": str(port), **topics.as_env()}
    svc = ServiceProcess("ingest", env, port=port, log_dir=tmp_path).start().wait_ready()
    assert svc.stop() == 0, svc.log_tail()
