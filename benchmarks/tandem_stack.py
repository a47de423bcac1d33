"""The Tandem processes the ingest and search benchmarks run, each stopped on the way out.

Same patterns as tests/e2e_support.py: PostgreSQL and Redis through
`tandem.services.*.running_*`, every other server as `python -m tandem.cli ...` with its
settings in the environment, SIGTERM then (after a timeout) SIGKILL. The model servers get
the environment `tandem up` gives them (`tandem.stack.model_server_specs`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tandem.config import ModelServerSettings
from tandem.services.postgres import THROWAWAY_SETTINGS, running_postgres
from tandem.services.process import stop as stop_process
from tandem.services.redis import running_redis
from tandem.stack import model_server_specs

HOST = "127.0.0.1"
READY_TIMEOUT = 180.0  # a busy shared machine loads a model slowly
WORKER_READY_MARKER = "ready."


class StackFailed(RuntimeError):
    """A process exited early or was not ready in time; the message holds its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        stop_process(self.popen, signal.SIGTERM, timeout)

    def wait_http_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    raise StackFailed(f"{self.name} exited early:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/api/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise StackFailed(f"{self.name} not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def wait_log_marker(self, marker: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise StackFailed(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.2)


@contextmanager
def process(
    name: str, argv: list[str], log_dir: Path, env: Mapping[str, str], url: str = ""
) -> Iterator[Process]:
    """Start `argv` (output to log_dir/name.log); stopped when the block exits."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            argv, env=os.environ | dict(env), stdout=log_file, stderr=subprocess.STDOUT
        )
    started = Process(name, popen, url, log_path)
    try:
        yield started
    finally:
        started.stop()


def tandem_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tandem.cli", *args]


@dataclass(frozen=True)
class Backends:
    database_url: str
    redis_url: str

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}


@contextmanager
def backends(data_dir: Path, *, durable: bool) -> Iterator[Backends]:
    """PostgreSQL + pgvector and Redis in `data_dir`. `durable=False`: fsync off, as the
    tests run it (a benchmark's cluster is thrown away; durable is what `tandem up` runs)."""
    settings = {} if durable else dict(THROWAWAY_SETTINGS)
    with (
        running_postgres(data_dir / "postgres", free_port(), settings) as database_url,
        running_redis(data_dir / "redis", free_port()) as redis_url,
    ):
        yield Backends(database_url, redis_url)


def role_cpus() -> dict[str, str]:
    """{role: how it shares the CPUs}, as `tandem up` starts the two model servers."""
    _, sharing = model_server_specs(ModelServerSettings())
    return sharing


def _up_env() -> dict[str, dict[str, str]]:
    """{role: the environment `tandem up` gives that model server} (CPU priority, pins)."""
    specs, _ = model_server_specs(ModelServerSettings())
    return {spec.name.removesuffix("-model-server"): spec.env for spec in specs}


@contextmanager
def model_servers(log_dir: Path, roles: tuple[str, ...]) -> Iterator[dict[str, Process]]:
    """The model servers of `roles`, as `tandem up` starts them, ready on return."""
    up_env = _up_env()
    with ExitStack() as stack:
        servers: dict[str, Process] = {}
        for role in roles:
            port = free_port()
            argv = tandem_argv("model-server", "--role", role, "--port", str(port))
            env = up_env[role]
            url = f"http://{HOST}:{port}"
            servers[role] = stack.enter_context(process(f"{role}-server", argv, log_dir, env, url))
        for server in servers.values():
            server.wait_http_ready()
        yield servers


def _host_port(url: str) -> tuple[str, str]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, port


@contextmanager
def api_server(
    log_dir: Path,
    backends_: Backends,
    inference_url: str,
    extra_env: Mapping[str, str] | None = None,
    name: str = "api",
) -> Iterator[Process]:
    port = free_port()
    host, model_port = _host_port(inference_url)
    env = backends_.env() | {"MODEL_SERVER_HOST": host, "MODEL_SERVER_PORT": model_port}
    argv = tandem_argv("api", "--open-access", "--port", str(port))
    url = f"http://{HOST}:{port}"
    with process(name, argv, log_dir, env | dict(extra_env or {}), url) as api:
        api.wait_http_ready()
        yield api


@contextmanager
def worker(
    log_dir: Path,
    backends_: Backends,
    indexing_url: str,
    argv: list[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Process]:
    """`tandem worker` (or `argv`, an equivalent entry point), ready to take tasks."""
    host, port = _host_port(indexing_url)
    env = backends_.env() | {"INDEXING_MODEL_SERVER_HOST": host, "INDEXING_MODEL_SERVER_PORT": port}
    command = argv or tandem_argv("worker")
    with process("worker", command, log_dir, env | dict(extra_env or {})) as started:
        started.wait_log_marker(WORKER_READY_MARKER)
        yield started


def postmaster_pid(data_dir: Path) -> int:
    """The PostgreSQL server's pid, from the first line of its data directory's pid file."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _cpu_ticks(pid: int, *, reaped: bool) -> int:
    """utime + stime of `pid` (+ cutime + cstime: its waited-for children), 0 if gone."""
    try:
        # The fields after the ")" that closes the command name; utime is the 12th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11 : 15 if reaped else 13])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # the thread or process exited meanwhile
    return found


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid`, of its live descendants and of its reaped children
    (PostgreSQL's backends, once their connections close)."""
    ticks = _cpu_ticks(pid, reaped=True)
    pending = _children(pid)
    while pending:
        child = pending.pop()
        ticks += _cpu_ticks(child, reaped=False)
        pending.extend(_children(child))
    return ticks / os.sysconf("SC_CLK_TCK")


def scrape_metrics(url: str) -> dict[str, float]:
    """A model server's Prometheus samples as {'name{labels}': value}."""
    text = httpx.get(f"{url}/metrics", timeout=10.0).raise_for_status().text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def metric_growth(before: dict[str, float], after: dict[str, float], name: str) -> float:
    """How much a counter grew, summed over its label sets."""
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.split("{", 1)[0] == name)
