"""The Tandem processes the ingest and search benchmarks run, each stopped on the way out.

Same patterns as tests/e2e_support.py: PostgreSQL and Redis through
`tandem.local.services.*.running_*`, every other server as `python -m tandem.cli ...` with its
settings in the environment, SIGTERM then (after a timeout) SIGKILL. The model servers get
the environment `tandem up` gives them (`tandem.local.stack.model_server_specs`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tandem.config import ModelServerSettings
from tandem.local.services.postgres import THROWAWAY_SETTINGS, running_postgres
from tandem.local.services.process import LOOPBACK as HOST
from tandem.local.services.process import free_port as free_port
from tandem.local.services.process import log_tail, wait_http_ready, wait_until
from tandem.local.services.process import stop as stop_process
from tandem.local.services.redis import running_redis
from tandem.local.stack import WORKER_READY_OUTPUT as WORKER_READY_MARKER
from tandem.local.stack import model_server_specs

READY_TIMEOUT = 180.0  # a busy shared machine loads a model slowly
MARKER_POLL_SECONDS = 0.2


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0) -> None:
        stop_process(self.popen, signal.SIGTERM, timeout)

    def wait_http_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until `GET /api/ready` answers 200 (ServiceError with the log tail otherwise)."""
        url = f"{self.url}/api/ready"
        wait_http_ready(url, self.name, timeout, self.popen, log_path=self.log_path)

    def wait_log_marker(self, marker: str, timeout: float = READY_TIMEOUT) -> None:
        def written() -> bool:
            return marker in self.log_path.read_text(errors="replace")

        wait_until(
            written,
            self.name,
            timeout,
            self.popen,
            interval=MARKER_POLL_SECONDS,
            log_path=self.log_path,
        )


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
def model_servers(
    log_dir: Path,
    roles: tuple[str, ...],
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[dict[str, Process]]:
    """The model servers of `roles`, as `tandem up` starts them (plus `overrides[role]`,
    e.g. another CPU priority), ready on return."""
    up_env = _up_env()
    with ExitStack() as stack:
        servers: dict[str, Process] = {}
        for role in roles:
            port = free_port()
            argv = tandem_argv("model-server", "--role", role, "--port", str(port))
            env = up_env[role] | dict((overrides or {}).get(role, {}))
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


def descendants(pid: int) -> list[int]:
    """The pids of `pid`'s live descendants, at this moment."""
    found: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(_children(child))
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of the one process `pid` (0 if gone)."""
    return _cpu_ticks(pid, reaped=False) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid`, of its live descendants and of its reaped children
    (PostgreSQL's backends, once their connections close)."""
    ticks = _cpu_ticks(pid, reaped=True)
    ticks += sum(_cpu_ticks(child, reaped=False) for child in descendants(pid))
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
