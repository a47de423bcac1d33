"""Which CPUs a process may use, at which priority, and pinning to them.

When both roles share a machine, the indexing role uses every usable CPU at the lowest
CPU priority (SCHED_IDLE where permitted, else nice 19) and the inference role runs at
normal priority: the kernel then hands a CPU to a query the moment it arrives, and bulk
work gets whatever queries leave idle. Measured on a quiet 2-core machine (issue 9), this
beats pinning each role to its own CPUs on both axes (bulk throughput nearly doubles,
query p99 improves). Pinning (`TANDEM_CPUS`, `tandem up --pin-cpus`) stays available.
"""

from __future__ import annotations

import math
import os
from enum import StrEnum
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
LOWEST_NICE = 19


class CpuPriority(StrEnum):
    NORMAL = "normal"
    NICE = "nice"  # nice 19
    IDLE = "idle"  # SCHED_IDLE (runs only when a CPU has nothing else to do), else nice 19


def parse_cpu_list(spec: str) -> set[int]:
    """Parse "0", "0-3" or "0,2,4-5" (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            if int(low) > int(high):
                raise ValueError(f"bad CPU range {part!r}")
            cpus.update(range(int(low), int(high) + 1))
        else:
            cpus.add(int(part))
    if not cpus:
        raise ValueError(f"empty CPU list {spec!r}")
    return cpus


def format_cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 quota (a container's CPU limit), rounded up."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def usable_threads() -> int:
    cpus = len(affinity())
    limit = cgroup_cpu_limit()
    return min(cpus, limit) if limit else cpus


# Threads a query runs on by default: one. Measured on 2 busy cores with the indexing
# server saturated at idle priority (benchmarks/results/model_server_variants.json): query
# p50 / p99 3.5 / 36 ms on one thread against 8.8 / 106 ms on two, and the in-process
# floor 2.3 vs 35.8 ms p50. ONNX Runtime's parallel loop waits for its slowest thread, so
# whenever the other CPU is busy a query waits for a time slice there; on an idle machine
# the second thread saves only ~0.4 ms of a ~1.5 ms int8 query. One thread also leaves
# the other CPUs to indexing. TANDEM_THREADS raises it.
INFERENCE_THREADS = 1


def role_threads(indexing: bool) -> int:
    """ONNX Runtime threads by role: indexing takes every usable CPU (it yields them to
    queries by priority), inference at most INFERENCE_THREADS."""
    usable = usable_threads()
    return usable if indexing else min(usable, INFERENCE_THREADS)


def pin(cpus: set[int]) -> bool:
    """Restrict this process (and the threads it starts later) to ``cpus``."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, cpus)
    return True


def _thread_ids() -> list[int]:
    try:
        return [int(task.name) for task in Path("/proc/self/task").iterdir()]
    except OSError:  # no procfs: only this thread
        return [0]


def _set_idle_policy(thread: int) -> bool:
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (PermissionError, ProcessLookupError):
        return False  # a seccomp profile may refuse it; nice 19 is already in place
    return True


def apply_priority(priority: CpuPriority) -> str:
    """Lower this process's CPU priority; return what took effect ("normal", "nice 19",
    "SCHED_IDLE").

    Call it before the ONNX session exists: threads inherit the policy and nice value of
    the thread that creates them, and on Linux both are per thread, so every thread alive
    now is changed too.
    """
    if priority is CpuPriority.NORMAL:
        return "normal"
    threads = _thread_ids()
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread, LOWEST_NICE)
        except ProcessLookupError:
            continue  # the thread exited meanwhile
    if priority is CpuPriority.IDLE and all(_set_idle_policy(t) for t in threads):
        return "SCHED_IDLE"
    return f"nice {LOWEST_NICE}"


def split_for_roles(cpus: set[int]) -> tuple[set[int], set[int]]:
    """CPU sets for (inference, indexing) on one machine, when pinning is asked for
    (`tandem up --pin-cpus`); by default both roles share all CPUs by priority.

    A query gains little beyond a few threads, bulk work scales with every core, so
    inference gets a quarter to a half (at least one, at most four) and indexing the rest.
    With a single CPU both share it.
    """
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return set(ordered), set(ordered)
    inference = max(1, min(4, len(ordered) // 4 if len(ordered) >= 8 else len(ordered) // 2))
    return set(ordered[:inference]), set(ordered[inference:])
