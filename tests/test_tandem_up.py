"""The real `tandem up`: readable start-up, a SIGKILLed service comes back while the API
keeps answering, Ctrl-C stops everything."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tandem.local.launcher import display_path
from tandem.local.service_log_view import read_records
from tandem.local.stack import SERVICE_NAMES
from tests.support import die_with_pytest, free_port, service_dir

pytestmark = pytest.mark.slow

START_TIMEOUT = 400.0  # seven services, two models, on a shared 2-core machine
LINE_TIMEOUT = 120.0
# Settings that would point `tandem up` at servers other than its own.
FOREIGN_SETTINGS = ("DATABASE_URL", "REDIS_URL", "API_SERVER_URL", "MODEL_SERVER_HOST")


@dataclass
class RunningUp:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    data_dir: Path
    stderr_path: Path
    api_url: str
    web_url: str

    def next_line(self, timeout: float = LINE_TIMEOUT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"tandem up printed nothing in {timeout:.0f}s") from None

    def lines_until(self, last: str, timeout: float = START_TIMEOUT) -> list[str]:
        printed = [self.next_line(timeout)]
        while printed[-1] != last:
            printed.append(self.next_line(timeout))
        return printed

    def pids(self) -> dict[str, int]:
        """The latest pid of each service, from `tandem up`'s own log."""
        found = {}
        for record in read_records(self.data_dir / "logs" / "up.log"):
            started = re.fullmatch(
                r"service_started name=(\S+) pid=(\d+)", str(record.get("event"))
            )
            if started:
                found[started[1]] = int(started[2])
        return found


def _copy_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


@pytest.fixture
def tandem_up(model_cache: Path, tmp_path: Path) -> Iterator[RunningUp]:
    ports = {name: free_port() for name in ("api", "web", "postgres", "redis")}
    # Outside pytest's private temporary root: PostgreSQL runs unprivileged.
    with service_dir("up") as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_SETTINGS} | {
            "TANDEM_DATA_DIR": str(data_dir),
            "MODEL_SERVER_PORT": str(free_port()),
            "INDEXING_MODEL_SERVER_PORT": str(free_port()),
        }
        argv = [sys.executable, "-m", "tandem.cli", "up", "--ready-timeout", "300"]
        for name, port in ports.items():
            argv += [f"--{name}-port", str(port)]
        stderr_path = tmp_path / "up.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=die_with_pytest,
            )
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_copy_lines, args=(process.stdout, lines), daemon=True).start()
        up = RunningUp(
            process,
            lines,
            data_dir,
            stderr_path,
            api_url=f"http://127.0.0.1:{ports['api']}",
            web_url=f"http://127.0.0.1:{ports['web']}",
        )
        try:
            yield up
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the same orderly stop as Ctrl-C
                try:
                    process.wait(120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def test_tandem_up_is_readable_restarts_a_killed_service_and_stops_on_ctrl_c(
    tandem_up: RunningUp,
) -> None:
    printed = tandem_up.lines_until("Press Ctrl-C to stop.")

    # One line per service as it becomes ready, in start order, then the banner.
    logs = tandem_up.data_dir / "logs"
    assert printed[0] == f"Starting 7 services; logs in {display_path(logs)} (tandem logs -f)"
    for line, name in zip(printed[1:8], SERVICE_NAMES, strict=True):
        assert re.fullmatch(rf" ✓ {name} +\S.* \(\d+\.\d s\)", line), line
    assert printed[8] == ""
    assert printed[9] == f"Tandem is up: open {tandem_up.web_url}"
    assert len(printed) == 17, printed
    assert not any(line.lstrip().startswith(("{", "[")) for line in printed), printed
    for name in SERVICE_NAMES:
        assert (logs / f"{name}.log").stat().st_size > 0

    killed = tandem_up.pids()["web-server"]
    os.kill(killed, signal.SIGKILL)
    assert tandem_up.next_line() == " ! web-server was killed by SIGKILL; restarting in 1 s"
    # The rest of the stack is untouched: the API answers while the web server is down.
    assert httpx.get(f"{tandem_up.api_url}/api/ready", timeout=10.0).status_code == 200
    assert re.fullmatch(r" ✓ web-server +\S+ +\(\d+\.\d s, restart 1\)", tandem_up.next_line())
    assert tandem_up.pids()["web-server"] != killed
    # ... and the new web server forwards to it again.
    search = httpx.post(
        f"{tandem_up.web_url}/api/search", json={"query": "tides", "mode": "keyword"}, timeout=30.0
    )
    assert search.status_code == 200, search.text

    pids = tandem_up.pids()
    tandem_up.process.send_signal(signal.SIGINT)
    assert tandem_up.process.wait(120) == 0
    assert tandem_up.lines_until("Stopped.", LINE_TIMEOUT)[-2:] == [
        "Stopping… (Ctrl-C again stops at once)",
        "Stopped.",
    ]
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by `tandem up`: gone, not a zombie
        assert name in SERVICE_NAMES
    # Nothing reached the terminal but the lines above.
    assert tandem_up.stderr_path.read_text() == ""
