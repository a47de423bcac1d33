"""The worker's liveness, with a stand-in that freezes as the real one did: a thread in C
code holding the GIL (a regular expression backtracking), which stops every other thread
and every Python-level signal handler. Its heartbeat file stops, its GIL-free watchdog
exits it, `tandem up`'s supervisor kills and restarts it, and nothing it started outlives
a SIGKILLed supervisor. The marks' arithmetic is tested in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.local.restarts import RestartPolicy
from tandem.local.spec import ServiceSpec
from tandem.local.supervisor import Supervisor
from tandem.worker.liveness import Liveness
from tests.support import die_with_pytest
from tests.test_supervisor import POLITE, Recorder, supervise_until

STALE_SECONDS = 2
# A worker stand-in: the real heartbeat (touch every 0.2 s, stale after 2 s), a Python
# SIGTERM handler as Celery has, "ready", then, once `trigger` exists, a task thread runs
# a regular expression whose backtracking goes on for ever in C with the GIL held. (In a
# task thread, as in the real worker: in the main thread, the regex engine would run the
# signal handlers now and then.)
FREEZING = f"""
import re, signal, sys, threading, time
from pathlib import Path
from tandem.worker.liveness import Liveness
heartbeat, trigger, watchdog = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "on"
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
liveness = Liveness(heartbeat, interval=0.2, stale_seconds={STALE_SECONDS}, watchdog=watchdog)
liveness.start()
print("ready", flush=True)
while not trigger.exists():
    time.sleep(0.05)
trigger.unlink()
parser = threading.Thread(target=re.match, args=(r"(a+)+$", "a" * 64 + "b"), name="parser")
print("freezing", flush=True)  # before: once the thread runs, this one never does again
parser.start()
parser.join()
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_file_is_touched_only_while_every_expected_mark_beats(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "run" / "worker.heartbeat"
    liveness = Liveness(path, interval=5.0, stale_seconds=60, watchdog=False, clock=clock)
    liveness.touch()
    assert path.exists()  # its directory made too
    liveness.expect("loop", every=1.0)  # allowance: half the stale time, 30 s
    liveness.expect("leases", every=20.0)  # three of its intervals, 60 s
    os.utime(path, (0, 0))

    clock.now += 29
    assert liveness.check() and path.stat().st_mtime > 0
    os.utime(path, (0, 0))
    clock.now += 2  # the loop missed 31 s of beats
    assert liveness.stalled() == ["loop"]
    assert not liveness.check() and path.stat().st_mtime == 0
    liveness.beat("loop")
    assert liveness.check() and path.stat().st_mtime > 0

    clock.now += 61
    assert liveness.stalled() == ["leases", "loop"]
    liveness.forget("loop")  # a broker reconnect: the loop is not expected to run
    liveness.beat("leases")
    assert liveness.stalled() == []
    liveness.beat("loop")  # a beat of a forgotten mark does not bring it back
    clock.now += 31
    assert liveness.stalled() == []


def standin(heartbeat: Path, trigger: Path, watchdog: bool) -> list[str]:
    return [sys.executable, "-c", FREEZING, str(heartbeat), str(trigger), "on" if watchdog else ""]


@pytest.mark.slow  # starts child processes
def test_a_worker_frozen_with_the_gil_held_is_exited_by_its_watchdog(tmp_path: Path) -> None:
    heartbeat, trigger = tmp_path / "heartbeat", tmp_path / "freeze"
    process = subprocess.Popen(
        standin(heartbeat, trigger, watchdog=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_pytest,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        trigger.touch()
        assert process.stdout.readline() == "freezing\n"
        frozen_at = time.time()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)  # its Python handler cannot run
        code = process.wait(STALE_SECONDS + 20)
    finally:
        process.kill()
        process.wait()
    assert code == 1  # faulthandler's exit, not the SIGTERM handler's 0
    assert process.stderr is not None
    stderr = process.stderr.read()
    # Every thread's stack, the stuck one's included: where it was frozen.
    assert f"Timeout (0:00:0{STALE_SECONDS})!" in stderr, stderr
    assert "in match" in stderr, stderr
    assert heartbeat.stat().st_mtime <= frozen_at + 0.5  # not touched since


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, Recorder]]:
    recorder = Recorder()
    policy = RestartPolicy(first_delay=0.05, max_delay=0.2, stable_after=60.0)
    started = Supervisor(log_dir=tmp_path / "logs", policy=policy, report=recorder)
    try:
        yield started, recorder
    finally:
        started.stop()


@pytest.mark.slow  # starts child processes
def test_the_supervisor_restarts_a_worker_whose_heartbeat_goes_stale(
    supervisor: tuple[Supervisor, Recorder], tmp_path: Path
) -> None:
    stack, recorder = supervisor
    heartbeat, trigger = tmp_path / "heartbeat", tmp_path / "freeze"
    spec = ServiceSpec(
        "worker",
        standin(heartbeat, trigger, watchdog=False),  # the supervisor alone notices
        ready_output="ready",
        heartbeat_file=heartbeat,
        heartbeat_stale_seconds=STALE_SECONDS,
    )
    assert stack.start_in_order([spec])
    (worker,) = stack.services
    first = worker.process.pid
    trigger.touch()  # the first run freezes; the next one finds no trigger

    supervise_until(stack, lambda: worker.restarts == 1 and worker.ready)

    assert worker.process.pid != first
    stale_then_killed = [e for e in recorder.events if e[0] in ("stale", "exited")]
    assert stale_then_killed == [
        ("stale", "worker", ""),
        ("exited", "worker", "was killed by SIGKILL"),
    ]
    assert recorder.events[-1] == ("ready", "worker", "1")
    # Still healthy a while later: a stale file of the killed run is not held against it.
    time.sleep(STALE_SECONDS + 1)
    stack.tick()
    assert worker.process.poll() is None and worker.restarts == 1


# `tandem up` with three services that would outlive it with a SIGTERM parent-death
# signal: one frozen with the GIL held, one ignoring SIGTERM, and one stopped (SIGSTOP).
LAUNCHER = """
import sys
from pathlib import Path
from tandem.local.launcher import run_stack
from tandem.local.spec import ServiceSpec
frozen, polite, logs = sys.argv[1], sys.argv[2], Path(sys.argv[3])
trigger = logs / "freeze"
logs.mkdir(parents=True, exist_ok=True)
trigger.touch()
specs = [
    ServiceSpec("frozen", [sys.executable, "-c", frozen, str(logs / "hb"), str(trigger), ""],
                ready_output="freezing"),
    ServiceSpec("stubborn", [sys.executable, "-c", polite, "stubborn", "-"], ready_output="ready"),
    ServiceSpec("stopped", [sys.executable, "-c", polite, "stopped", "-"], ready_output="ready"),
]
sys.exit(run_stack(specs, 60.0, "STACK UP", log_dir=logs))
"""


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{parent}\n" in status:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running or stopped; a zombie is dead (whoever reaps orphans here may be slow)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow  # starts child processes
def test_no_service_outlives_a_sigkilled_supervisor(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, FREEZING, POLITE, str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_pytest,
    )
    pids: list[int] = []
    try:
        assert launcher.stdout is not None
        deadline = time.monotonic() + 120
        while launcher.stdout.readline().strip() != "STACK UP":
            assert time.monotonic() < deadline and launcher.poll() is None
        pids = children(launcher.pid)
        assert len(pids) == 3
        stopped = max(pids)  # the last started
        os.kill(stopped, signal.SIGSTOP)
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if alive(pid)]
    finally:
        launcher.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
