"""The whole stack on one machine as background processes: ``lyssna stack up|down|status``.

Each service runs exactly as ``lyssna serve <svc>`` (what the images run), in
its own session so a Ctrl-C in the terminal that started it does not reach it.
What was started is recorded in ``.local/run/<name>-<svc>.pid`` and logs go to
``.local/logs/<name>-<svc>.log``; ``down`` only signals pids that still run the
command recorded for them, so a recycled pid is never hit.

The end-to-end tests and ``lyssna demo`` use :class:`Stack` directly with their
own name, environment (ports, topics, app ids, Redis prefix) and folders.
"""

from __future__ import annotations

import base64
import os
import secrets as _secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
DEFAULT_CONFIG = ROOT / "config" / "lyssna.example.yaml"
SERVICES = ("ingest", "classify", "alerts")
# Model loading on a 2-core machine takes most of this.
READY_TIMEOUT_S = 240.0


class StackError(RuntimeError):
    """A service could not start; the message says which, why, and ends with its log tail."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Created 0600 from the start: the file holds a secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (its parent has not reaped it yet) is dead for every purpose here.
    try:
        # The name in brackets may itself hold ") ", so the state follows the last one.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


class ManagedService:
    """One ``lyssna serve <svc>`` process, recorded in a pid file."""

    def __init__(self, service: str, *, port: int, env: Mapping[str, str], config: Path | None,
                 pidfile: Path, logfile: Path, host: str = "127.0.0.1"):
        self.service, self.port, self.host = service, port, host
        self.env, self.config = dict(env), config
        self.pidfile, self.logfile = pidfile, logfile
        self.cmd = [sys.executable, "-m", "lyssna.cli", "serve", service]
        if config is not None:
            self.cmd += ["--config", str(config)]
        self._proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def pid(self) -> int | None:
        """The recorded pid while it is alive and still runs this service."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._own(pid):
            # Our own child: its exit status is the authority, not /proc (poll() also reaps it).
            return pid if self._proc.poll() is None else None
        if not _alive(pid):
            return None
        parts = _cmdline(pid).split(b"\0")
        return pid if b"serve" in parts and self.service.encode() in parts else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> int:
        """Start it unless it already runs; return its pid."""
        pid = self.pid()
        if pid is not None:
            return pid
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            self._proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        self.pidfile.write_text(f"{self._proc.pid}\n")
        self.starts += 1
        return self._proc.pid

    def readiness(self) -> tuple[bool, str]:
        try:
            r = httpx.get(f"{self.url}/readyz", timeout=3)
        except httpx.HTTPError as e:
            return False, f"not answering ({type(e).__name__})"
        return r.status_code == 200, r.text[:300]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        detail = "not started"
        while time.monotonic() < deadline:
            if not self.running():
                raise StackError(f"{self.service} exited during start-up{self._how_it_ended()}; "
                                 f"last lines of {self.logfile}:\n{self.log_tail()}")
            ok, detail = self.readiness()
            if ok:
                return
            time.sleep(0.5)
        raise StackError(f"{self.service} did not become ready within {timeout:.0f}s "
                         f"(/readyz: {detail}); last lines of {self.logfile}:\n{self.log_tail()}")

    def signal(self, sig: int) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or say goodbye."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 30)

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; True if something was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        self.pidfile.unlink(missing_ok=True)
        return True

    def _how_it_ended(self) -> str:
        """`` (killed by SIGSEGV)`` and the like for our own child; the log alone
        cannot say, since a process killed by a signal writes nothing."""
        if self._proc is None or self._proc.poll() is None:
            return ""
        rc = self._proc.returncode
        if rc >= 0:
            return f" (exit code {rc})"
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        hint = ": out of memory? see `dmesg`" if rc == -signal.SIGKILL else ""
        return f" (killed by {name}{hint})"

    def _own(self, pid: int) -> bool:
        return self._proc is not None and self._proc.pid == pid

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._own(pid):
            # Our child is gone once reaped. Its first thread shows as a zombie while the
            # others are still exiting and still hold its port, files and memory: a
            # restart started then could not bind, or find the memory to load the model.
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


@dataclass
class Infra:
    """Starts local Kafka/Redis through scripts/infra.sh when the settings point at
    loopback and nothing answers there; a broker elsewhere is the operator's."""

    bootstrap_servers: str
    redis_url: str

    def _targets(self) -> list[tuple[str, str, int]]:
        out = []
        first = self.bootstrap_servers.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        out.append(("kafka", host or "127.0.0.1", int(port or 9092)))
        u = urlparse(self.redis_url)
        out.append(("redis", u.hostname or "127.0.0.1", u.port or 6379))
        return out

    def up(self, progress: Callable[[str], None]) -> None:
        for name, host, port in self._targets():
            if host not in ("127.0.0.1", "localhost", "::1"):
                continue
            if port_open(host, port):
                progress(f"{name}: answering on {host}:{port}")
                continue
            env = {**os.environ, f"LYSSNA_{name.upper()}_PORT": str(port)}
            subprocess.run([str(ROOT / "scripts" / "infra.sh"), "up", name], check=True, cwd=ROOT, env=env)


class Stack:
    """The three services, started and stopped together."""

    def __init__(self, *, config: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                 name: str = "lyssna", run_dir: Path | None = None, log_dir: Path | None = None,
                 services: tuple[str, ...] = SERVICES):
        from lyssna.common.config import load_settings

        self.config = Path(config) if config else None
        self.env = {**os.environ, **(env or {})}
        self.name = name
        self.run_dir = run_dir or LOCAL / "run"
        self.log_dir = log_dir or LOCAL / "logs"
        self.settings = load_settings(self.config, env=self.env)
        self.services: dict[str, ManagedService] = {}
        for svc in services:
            server = getattr(self.settings, svc)
            self.services[svc] = ManagedService(
                svc, port=server.port, host=_connect_host(server.host), env=self.env, config=self.config,
                pidfile=self.run_dir / f"{name}-{svc}.pid", logfile=self.log_dir / f"{name}-{svc}.log")

    def __getitem__(self, svc: str) -> ManagedService:
        return self.services[svc]

    def up(self, progress: Callable[[str], None] = lambda m: None, *, infra: bool = True,
           timeout: float = READY_TIMEOUT_S) -> None:
        if infra:
            Infra(self.settings.kafka.bootstrap_servers, self.settings.redis.url).up(progress)
        for svc in self.services.values():
            if svc.running():
                progress(f"{svc.service}: already running (pid {svc.pid()})")
                continue
            if port_open(svc.host, svc.port):
                raise StackError(f"{svc.service}: port {svc.host}:{svc.port} is in use by a process this "
                                 f"stack did not start. Fix: stop it or set LYSSNA_{svc.service.upper()}_PORT")
            pid = svc.start()
            progress(f"{svc.service}: started (pid {pid}), log {_rel(svc.logfile)}")
        # Started together, waited for one by one: they load in parallel.
        for svc in self.services.values():
            t0 = time.monotonic()
            svc.wait_ready(timeout)
            progress(f"{svc.service}: ready on {svc.url} ({time.monotonic() - t0:.0f}s)")

    def down(self, progress: Callable[[str], None] = lambda m: None, timeout: float = 30) -> None:
        # Upstream first, so nothing new flows into a service that is stopping.
        for svc in self.services.values():
            if svc.stop(timeout):
                progress(f"{svc.service}: stopped")

    def status(self) -> dict[str, str]:
        out = {}
        for svc in self.services.values():
            pid = svc.pid()
            if pid is None:
                out[svc.service] = "stopped"
            else:
                ok, detail = svc.readiness()
                out[svc.service] = f"running (pid {pid}) on {svc.url}, " + ("ready" if ok else f"not ready: {detail}")
        return out

    def where(self) -> str:
        s = self.services
        lines = []
        if "ingest" in s:
            lines.append(f"  ingest API   {s['ingest'].url}/v1/posts")
        if "alerts" in s:
            lines.append(f"  alerts API   {s['alerts'].url}/v1/...")
        lines.append("  metrics      " + "  ".join(f"{v.url}/metrics" for v in s.values()))
        lines.append(f"  logs         {_rel(self.log_dir)}/{self.name}-<service>.log")
        return "\n".join(lines)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def default_env(config: Path, echo: Callable[[str], None]) -> dict[str, str]:
    """LYSSNA_API_KEY, the author pseudonym key and each webhook's secret, from the environment or generated once
    into .local/ (so `make up` works out of the box and keeps the same key across runs)."""
    from lyssna.common.config import load_settings
    from lyssna.common.pseudonyms import AUTHOR_KEY_VAR

    env: dict[str, str] = {}
    if not os.environ.get("LYSSNA_API_KEY"):
        path = LOCAL / "api-key"
        env["LYSSNA_API_KEY"] = _read_or_create(path, lambda: _secrets.token_urlsafe(32))
        echo(f"LYSSNA_API_KEY is unset: using the key in {_rel(path)}; call the APIs with\n"
             f"  -H \"Authorization: Bearer $(cat {_rel(path)})\"")
    settings = load_settings(config, env={**os.environ, **env})
    if settings.privacy.authors == "pseudonymous" and not os.environ.get(AUTHOR_KEY_VAR):
        path = LOCAL / "author-key"
        env[AUTHOR_KEY_VAR] = _read_or_create(path, lambda: f"local:{_secrets.token_urlsafe(32)}")
        echo(f"{AUTHOR_KEY_VAR} is unset: author pseudonyms are keyed with the key in {_rel(path)}")
    for hook in settings.webhooks:
        if hook.secret_env and not os.environ.get(hook.secret_env):
            path = LOCAL / "secrets" / hook.secret_env
            env[hook.secret_env] = _read_or_create(path, new_webhook_secret)
            echo(f"{hook.secret_env} is unset: webhook {hook.name!r} is signed with the secret in {_rel(path)}")
    return env


def config_path() -> Path:
    return Path(os.environ.get("LYSSNA_CONFIG") or DEFAULT_CONFIG)
