"""Which CPUs a process may use, and pinning to them.

Oversubscribed threads are what ruins query latency when both roles share a machine:
each process caps its ONNX Runtime threads to the CPUs it really has (affinity mask and
cgroup quota), and `tandem up` gives each role its own CPU set.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


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


def pin(cpus: set[int]) -> bool:
    """Restrict this process (and the threads it starts later) to ``cpus``."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, cpus)
    return True


def split_for_roles(cpus: set[int]) -> tuple[set[int], set[int]]:
    """CPU sets for (inference, indexing) on one machine.

    A query gains little beyond a few threads, bulk work scales with every core, so
    inference gets a quarter to a half (at least one, at most four) and indexing the rest.
    With a single CPU both share it.
    """
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return set(ordered), set(ordered)
    inference = max(1, min(4, len(ordered) // 4 if len(ordered) >= 8 else len(ordered) // 2))
    return set(ordered[:inference]), set(ordered[inference:])
