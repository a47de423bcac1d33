"""Two hosts simulated on one machine: each process tree and thread kept on its own CPUs.

The product shares CPUs by priority, not pinning; a benchmark that asks what one role costs
another *across* hosts (e.g. a standby's replay beside a busy primary) pins each side to
its own CPUs instead, so the sides no longer share a scheduler queue.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from benchmarks.tandem_stack import descendants


def _threads(pid: int) -> list[int]:
    try:
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    except FileNotFoundError:
        return []


def pin_tree(pid: int, cpus: Iterable[int]) -> int:
    """Pin every thread of `pid` and of its live descendants to `cpus` (processes and
    threads started later inherit it from their parent); returns the threads pinned."""
    chosen = set(cpus)
    pinned = 0
    for member in [pid, *descendants(pid)]:
        for tid in _threads(member):
            try:
                os.sched_setaffinity(tid, chosen)
            except (ProcessLookupError, PermissionError):
                continue  # gone meanwhile, or not ours to move
            pinned += 1
    return pinned


def pin_this_thread(cpus: Iterable[int]) -> None:
    """Pin the calling thread only (Linux applies pid 0 to the caller's thread)."""
    os.sched_setaffinity(0, set(cpus))


def split_cpus() -> tuple[set[int], set[int]]:
    """(the write host's CPUs, the read host's CPUs): the usable CPUs halved."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        raise SystemExit("splitting hosts needs at least 2 usable CPUs")
    half = len(usable) // 2
    return set(usable[:half]), set(usable[half:])
