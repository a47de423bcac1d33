"""The two-host simulation of benchmarks/cpu_split.py pins whole process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from benchmarks.cpu_split import pin_tree, split_cpus
from benchmarks.tandem_stack import descendants

# A parent that starts a child which starts a thread: three levels to pin.
CHILD = "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); " + (
    "time.sleep(60)"
)
TREE = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {CHILD!r}]); " + (
    "time.sleep(60)"
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable CPUs")
def test_every_thread_of_a_process_tree_lands_on_the_chosen_cpus() -> None:
    parent = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        deadline = time.monotonic() + 30
        while (
            not (children := descendants(parent.pid))
            or len(os.listdir(f"/proc/{children[0]}/task")) < 2
        ):
            assert time.monotonic() < deadline, "the child and its thread did not start"
            time.sleep(0.05)
        _, read_side = split_cpus()
        pinned = pin_tree(parent.pid, read_side)
        tasks = [
            int(tid) for pid in (parent.pid, *children) for tid in os.listdir(f"/proc/{pid}/task")
        ]
        assert pinned == len(tasks) >= 3
        assert {frozenset(os.sched_getaffinity(tid)) for tid in tasks} == {frozenset(read_side)}
    finally:
        for child in descendants(parent.pid):  # before the parent: then they are orphans
            os.kill(child, 9)
        parent.kill()
        parent.wait(10)


def test_the_two_sides_split_the_usable_cpus_without_overlap() -> None:
    usable = os.sched_getaffinity(0)
    if len(usable) < 2:
        with pytest.raises(SystemExit):
            split_cpus()
        return
    write_side, read_side = split_cpus()
    assert write_side and read_side and not write_side & read_side
    assert write_side | read_side == usable
