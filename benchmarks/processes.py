"""Server processes the benchmark starts, and always stops (SIGTERM, wait, then kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from tandem.local.services.process import LOOPBACK as HOST
from tandem.local.services.process import ServiceError as ServerFailed
from tandem.local.services.process import free_port as free_port
from tandem.local.services.process import log_tail, wait_http_ready
from tandem.local.services.process import stop as stop_process

# Thread-count variables would cap the baseline; it must run with library defaults.
THREAD_CAP_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like an error, so every `finally` and `with` stops what it started
    (a benchmark killed by its runner leaves no server behind)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far.

    On a shared machine, throughput per CPU-second compares a server with its floor
    however much CPU time other tenants leave either of them.
    """
    # The fields after the ")" that closes the command name; utime is the 12th, stime next.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_settled(pids: list[int], *, cpu_share: float = 0.05, max_seconds: float = 90.0) -> float:
    """Wait until processes ``pids`` together use less than ``cpu_share`` of a CPU over a
    second (start-up and warm-up work done: "idle" is measured on a warm stack); returns
    the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(pid) for pid in pids) - before < cpu_share:
            break
    return time.monotonic() - started


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0) -> None:
        stop_process(self.process, signal.SIGTERM, timeout)

    def wait_ready(self, timeout: float = 120.0) -> dict[str, object]:
        """Poll `GET /api/ready` until 200; returns its JSON body (ServerFailed, with the
        log tail, if the server exits or is not ready in time)."""
        url = f"{self.url}/api/ready"
        response = wait_http_ready(url, self.name, timeout, self.process, log_path=self.log_path)
        body: dict[str, object] = orjson.loads(response.content)
        return body


@contextmanager
def running(
    name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """Start a server process; stop it on exit from the block, error or not."""
    environment = dict(os.environ) | dict(env or {})
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    port = argv[argv.index("--port") + 1]
    server = Server(name, process, f"http://{HOST}:{port}", log_path)
    try:
        yield server
    finally:
        server.stop()


def tandem_argv(role: str, port: int) -> list[str]:
    return [sys.executable, "-m", "tandem.cli", "model-server", "--role", role, "--port", str(port)]


def baseline_argv(role: str, port: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.baseline_server", "--role", role, "--port", str(port)]


def baseline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_CAP_VARIABLES}
    return env | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class FloorSetup:
    """How the server a floor matches runs: CPU set ("" = all), threads, precision and
    CPU priority (`tandem.cpu.CpuPriority` values)."""

    cpus: str
    threads: int
    precision: str
    priority: str


class FloorWorker:
    """`benchmarks.floor` in its own process, set up like the server it matches, asked
    for one measurement at a time."""

    def __init__(self, role: str, setup: FloorSetup) -> None:
        argv = [sys.executable, "-m", "benchmarks.floor", f"--role={role}"]
        argv += [f"--cpus={setup.cpus}", f"--threads={setup.threads}"]
        argv += [f"--precision={setup.precision}", f"--priority={setup.priority}"]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def measure(self, op: str, texts: list[str], max_seconds: float) -> dict[str, object]:
        """The worker stops itself at ``max_seconds``, so the read below always returns."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(orjson.dumps({"op": op, "texts": texts, "max_seconds": max_seconds}) + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise ServerFailed(f"floor worker exited with code {self.process.wait(10)}")
        result: dict[str, object] = orjson.loads(line)
        return result

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # end of input: the worker's loop ends
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


@contextmanager
def floor_worker(role: str, setup: FloorSetup) -> Iterator[FloorWorker]:
    worker = FloorWorker(role, setup)
    try:
        yield worker
    finally:
        worker.stop()
