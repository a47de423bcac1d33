"""CPU sharing by priority: the indexing server yields every CPU to queries.

The model servers are started from the specs `tandem up` runs (`tandem.local.stack`) by the
launcher `tandem up` uses, and their priority is read from /proc for every thread of the
real processes: the kernel keeps the policy and nice value per thread, and ONNX Runtime's
pool threads must have inherited them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tandem import cpu
from tandem.config import ModelServerSettings
from tandem.cpu import CpuPriority
from tandem.local.launcher import RunningService, Stack
from tandem.local.stack import model_server_specs
from tests.support import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SCHED_OTHER, SCHED_IDLE = 0, 5  # policy numbers in /proc/<pid>/task/<tid>/stat


@dataclass(frozen=True)
class ThreadPriority:
    name: str
    nice: int
    policy: int


def thread_priorities(pid: int) -> list[ThreadPriority]:
    """Nice value and scheduling policy of every thread of ``pid`` (proc(5): stat fields
    19 and 41, counted after the parenthesized command name, which may hold spaces)."""
    found = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread exited meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
        found.append(ThreadPriority(name, nice=int(fields[16]), policy=int(fields[38])))
    return found


@pytest.fixture(scope="module")
def up_model_servers(
    model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningService]]:
    """Both model servers as `tandem up` starts them (same specs, same launcher)."""
    ports = {"MODEL_SERVER_PORT": str(free_port()), "INDEXING_MODEL_SERVER_PORT": str(free_port())}
    settings = ModelServerSettings(
        inference_port=int(ports["MODEL_SERVER_PORT"]),
        indexing_port=int(ports["INDEXING_MODEL_SERVER_PORT"]),
    )
    specs, _ = model_server_specs(settings)
    stack = Stack(stop_timeout=30.0)
    try:
        started = {}
        for spec in specs:
            spec.env |= ports
            started[spec.name] = stack.start(spec)
        for service in started.values():
            # Generous: the indexing server warms up at idle priority on a shared machine.
            stack.wait_ready(service, timeout=300.0)
        yield started
    finally:
        stack.stop()


@pytest.mark.slow  # starts both model servers
def test_indexing_server_runs_every_thread_at_the_lowest_priority(
    up_model_servers: dict[str, RunningService],
) -> None:
    pid = up_model_servers["indexing-model-server"].process.pid
    threads = thread_priorities(pid)
    # uvicorn's loop, anyio's workers, the batcher and ONNX Runtime's intra-op pool.
    assert len(threads) > 2
    for thread in threads:
        assert thread.nice == cpu.LOWEST_NICE, thread
        # Root (as here) may always choose SCHED_IDLE; elsewhere nice 19 is the fallback.
        assert thread.policy in (SCHED_IDLE, SCHED_OTHER), thread
    if os.geteuid() == 0:
        assert {t.policy for t in threads} == {SCHED_IDLE}


@pytest.mark.slow  # starts both model servers
def test_inference_server_runs_at_normal_priority(
    up_model_servers: dict[str, RunningService],
) -> None:
    pid = up_model_servers["inference-model-server"].process.pid
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    threads = thread_priorities(pid)
    assert threads
    for thread in threads:
        assert (thread.nice, thread.policy) == (ours, SCHED_OTHER), thread


@pytest.mark.slow  # starts both model servers
def test_indexing_server_uses_every_cpu_unpinned(
    up_model_servers: dict[str, RunningService],
) -> None:
    for service in up_model_servers.values():
        assert os.sched_getaffinity(service.process.pid) == os.sched_getaffinity(0)
        assert "TANDEM_CPUS" not in service.spec.env


def test_pinning_stays_available() -> None:
    specs, sharing = model_server_specs(ModelServerSettings(), pin_cpus=True)
    inference, indexing = (cpu.parse_cpu_list(spec.env["TANDEM_CPUS"]) for spec in specs)
    assert inference | indexing == cpu.affinity()
    if len(cpu.affinity()) > 1:
        assert not inference & indexing
    assert sharing["inference"].startswith("CPUs ")


def _priority_in_child(priority: CpuPriority) -> tuple[str, int, int]:
    """apply_priority in a fresh interpreter (it cannot be undone without privileges)."""
    code = (
        "import os, threading\n"
        "from tandem.cpu import CpuPriority, apply_priority\n"
        "started = threading.Event(); stop = threading.Event()\n"
        "t = threading.Thread(target=lambda: (started.set(), stop.wait()))\n"
        "t.start(); started.wait()\n"
        f"applied = apply_priority(CpuPriority({priority.value!r}))\n"
        "tid = t.native_id\n"
        "print(applied, os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid),"
        " sep='|')\n"
        "stop.set(); t.join()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    applied, nice, policy = done.stdout.strip().split("|")
    return applied, int(nice), int(policy)


def test_nice_priority_reaches_threads_that_already_exist() -> None:
    applied, nice, policy = _priority_in_child(CpuPriority.NICE)
    assert (applied, nice, policy) == ("nice 19", 19, os.SCHED_OTHER)


def test_idle_priority_is_sched_idle_with_nice_19_underneath() -> None:
    applied, nice, policy = _priority_in_child(CpuPriority.IDLE)
    assert nice == 19
    if os.geteuid() == 0:
        # Root may always choose SCHED_IDLE: the fallback here would be a bug.
        assert (applied, policy) == ("SCHED_IDLE", os.SCHED_IDLE)
    elif applied == "SCHED_IDLE":
        assert policy == os.SCHED_IDLE
    else:
        assert (applied, policy) == ("nice 19", os.SCHED_OTHER)


def test_priority_is_a_property_of_sharing_a_host() -> None:
    """Alone (a pod of its own, a test) a server keeps normal priority; `tandem up`, which
    puts both roles on one host, lowers the indexing server's."""
    assert ModelServerSettings(indexing_only=True).cpu_priority is CpuPriority.NORMAL
    specs, _ = model_server_specs(ModelServerSettings())
    by_name = {spec.name: spec.env["TANDEM_CPU_PRIORITY"] for spec in specs}
    assert by_name == {"inference-model-server": "normal", "indexing-model-server": "idle"}


def test_thread_defaults_by_role() -> None:
    assert cpu.role_threads(indexing=True) == cpu.usable_threads()
    assert cpu.role_threads(indexing=False) == 1  # measured: see cpu.INFERENCE_THREADS
