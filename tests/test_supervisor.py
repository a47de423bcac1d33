"""The supervisor behind `tandem up`, with tiny real child processes: restart after a
SIGKILL while the others keep serving, a crash loop stops with the log tail, reverse-order
shutdown with a kill after the grace period, and the restart policy's arithmetic."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tandem.local.launcher import Console, run_stack
from tandem.local.restarts import ExitHistory, RestartPolicy
from tandem.local.service_log_view import read_records
from tandem.local.services.process import free_port
from tandem.local.spec import ServiceSpec
from tandem.local.supervisor import RunningService, StackFailed, Supervisor

# Restarts in tens of milliseconds, so a crash loop is reached in about a second.
FAST = RestartPolicy(first_delay=0.05, max_delay=0.2, stable_after=60.0)
DEADLINE = 60.0

# Prints "ready"; exits 3 with a last word on stderr once `crash_file` exists, else waits.
FLAKY = """
import os, signal, sys
print("ready", flush=True)
if os.path.exists(sys.argv[1]):
    print("boom: the disk is on fire", file=sys.stderr, flush=True)
    sys.exit(3)
while True:
    signal.pause()
"""
# Writes its name to `record` when asked to stop (SIGTERM), or ignores SIGTERM ("-").
POLITE = """
import signal, sys
name, record = sys.argv[1], sys.argv[2]
def stop(signum, frame):
    with open(record, "a") as file:
        file.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if record == "-" else stop)
print("ready", flush=True)
while True:
    signal.pause()
"""


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def ready(self, service: RunningService, seconds: float) -> None:
        self.events.append(("ready", service.spec.name, str(service.restarts)))

    def exited(self, service: RunningService, how: str, restart_in: float) -> None:
        self.events.append(("exited", service.spec.name, how))

    def not_ready(self, service: RunningService, timeout: float) -> None:
        self.events.append(("not_ready", service.spec.name, ""))

    def stale(self, service: RunningService, age: float) -> None:
        self.events.append(("stale", service.spec.name, ""))


def python(name: str, script: str, *args: str) -> ServiceSpec:
    return ServiceSpec(name, [sys.executable, "-c", script, *args], ready_output="ready")


def http_server(name: str, root: Path) -> ServiceSpec:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(root)]
    url = f"http://127.0.0.1:{port}/"
    return ServiceSpec(name, argv, ready_url=url, address=url)


def supervise_until(supervisor: Supervisor, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    supervisor.supervise(until=lambda: condition() or time.monotonic() > deadline)
    assert condition(), "condition not reached within the deadline"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def supervisor(tmp_path: Path, recorder: Recorder) -> Iterator[Supervisor]:
    started = Supervisor(
        log_dir=tmp_path / "logs", policy=FAST, ready_timeout=60.0, report=recorder
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.slow  # starts child processes
def test_a_killed_service_is_restarted_and_the_others_keep_serving(
    supervisor: Supervisor, recorder: Recorder, tmp_path: Path
) -> None:
    web_spec = http_server("web", tmp_path)
    assert supervisor.start_in_order([web_spec, python("worker", FLAKY, str(tmp_path / "never"))])
    web, worker = supervisor.services
    web_pid, first_pid = web.process.pid, worker.process.pid

    os.kill(first_pid, signal.SIGKILL)
    supervise_until(supervisor, lambda: worker.restarts == 1 and worker.ready)

    assert worker.process.pid != first_pid and worker.process.poll() is None
    assert ("exited", "worker", "was killed by SIGKILL") in recorder.events
    assert recorder.events[-1] == ("ready", "worker", "1")
    # The other service was never touched and still answers.
    assert web.process.pid == web_pid and web.restarts == 0
    assert httpx.get(str(web_spec.ready_url), timeout=5.0).status_code == 200
    log_path = supervisor.log_path("worker")
    assert log_path is not None
    ready_lines = [r for r in read_records(log_path) if r.get("message") == "ready"]
    assert len(ready_lines) == 2
    assert {r["stream"] for r in ready_lines} == {"stdout"}


@pytest.mark.slow  # starts child processes
def test_a_crash_loop_stops_with_the_service_name_and_its_log_tail(
    supervisor: Supervisor, recorder: Recorder, tmp_path: Path
) -> None:
    crash_file = tmp_path / "crash"
    assert supervisor.start_in_order([python("flaky", FLAKY, str(crash_file))])
    (flaky,) = supervisor.services
    crash_file.touch()  # every run from now on dies at once
    os.kill(flaky.process.pid, signal.SIGKILL)

    with pytest.raises(StackFailed) as failed:
        supervise_until(supervisor, lambda: False)

    assert failed.value.service == "flaky"
    assert "crash loop" in failed.value.reason
    assert "5 exits within 60s" in failed.value.reason
    assert "exited with code 3" in failed.value.reason
    assert "boom: the disk is on fire" in failed.value.log_tail
    # Backing off: four restarts were attempted before the fifth exit ended it.
    assert flaky.restarts == 4
    exits = [how for event, _, how in recorder.events if event == "exited"]
    assert exits == ["was killed by SIGKILL"] + ["exited with code 3"] * 3


@pytest.mark.slow  # starts child processes
def test_stop_goes_in_reverse_start_order_and_kills_after_the_grace(
    tmp_path: Path, recorder: Recorder
) -> None:
    record = tmp_path / "stopped.txt"
    specs = [python("stubborn", POLITE, "stubborn", "-")]
    specs += [python(name, POLITE, name, str(record)) for name in ("first", "second", "third")]
    supervisor = Supervisor(log_dir=tmp_path / "logs", policy=FAST, stop_timeout=1.0)
    try:
        assert supervisor.start_in_order(specs)
    finally:
        supervisor.stop()
    assert record.read_text().split() == ["third", "second", "first"]
    codes = {service.spec.name: service.process.returncode for service in supervisor.services}
    assert codes == {"stubborn": -signal.SIGKILL, "first": 0, "second": 0, "third": 0}


@pytest.mark.slow  # starts child processes
def test_a_service_that_dies_while_starting_fails_the_stack_with_its_log(tmp_path: Path) -> None:
    crash_file = tmp_path / "crash"
    crash_file.touch()
    failing = python("broken", FLAKY, str(crash_file))
    failing.ready_output = "never printed"
    out = io.StringIO()
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

    code = run_stack([failing], 30.0, "BANNER", log_dir=tmp_path / "logs", out=out)

    assert code == 1
    printed = out.getvalue()
    assert "broken exited with code 3 before it was ready; stopping the stack." in printed
    assert "boom: the disk is on fire" in printed
    assert "BANNER" not in printed
    # run_stack gives the signal handlers back.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_backoff_doubles_to_its_cap_and_resets_after_a_stable_run() -> None:
    history = ExitHistory(RestartPolicy(first_delay=1.0, max_delay=30.0, stable_after=30.0))
    # Exits far apart in time (no crash loop), each after a short run.
    delays = [history.restart_delay(now=100.0 * n, uptime=2.0) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert history.restart_delay(now=900.0, uptime=45.0) == 1.0  # it had stayed up
    assert history.restart_delay(now=1000.0, uptime=1.0) == 2.0


def test_five_exits_within_a_minute_are_a_crash_loop() -> None:
    history = ExitHistory(RestartPolicy())
    assert [history.restart_delay(now=t, uptime=1.0) for t in (0, 10, 20, 30)] == [1, 2, 4, 8]
    assert history.restart_delay(now=40.0, uptime=1.0) is None

    spread = ExitHistory(RestartPolicy())
    # Five exits, but never five within 60 s.
    for now in (0.0, 20.0, 40.0, 59.0, 61.0, 82.0):
        assert spread.restart_delay(now=now, uptime=1.0) is not None


@pytest.mark.slow  # starts child processes
def test_verbose_output_is_prefixed_by_the_service_name(tmp_path: Path) -> None:
    out = io.StringIO()
    chatty = python(
        "chatty", 'print(\'{"level": "warning", "event": "disk_low", "free": 3}\')\n' + FLAKY, "-"
    )
    supervisor = Supervisor(log_dir=tmp_path / "logs", echo=Console(out).echo)
    try:
        assert supervisor.start_in_order([chatty])
    finally:
        supervisor.stop()
    assert out.getvalue().splitlines() == [
        "chatty                 | WARNING disk_low free=3",
        "chatty                 | ready",
    ]


@pytest.mark.slow  # starts child processes
def test_a_second_stop_request_while_stopping_kills_at_once(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    specs = [
        python("stubborn", POLITE, "stubborn", "-"),
        python("polite", POLITE, "p", str(record)),
    ]
    supervisor = Supervisor(log_dir=tmp_path / "logs", stop_timeout=DEADLINE)
    assert supervisor.start_in_order(specs)

    def second_ctrl_c() -> None:
        # Once the polite one has stopped, the supervisor is waiting on the stubborn one.
        deadline = time.monotonic() + DEADLINE
        while not (record.exists() and record.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the child's record, not placing a state
        supervisor.request_stop()

    watcher = threading.Thread(target=second_ctrl_c)
    watcher.start()
    began = time.monotonic()
    supervisor.request_stop()
    supervisor.stop()
    watcher.join()
    assert time.monotonic() - began < DEADLINE / 2  # not the grace period
    stubborn, polite = supervisor.services
    assert polite.process.returncode == 0
    assert stubborn.process.returncode == -signal.SIGKILL
