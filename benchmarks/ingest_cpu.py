"""CPU per document, per process and per stage, for the ingest benchmark.

Processes: /proc/<pid>/stat utime + stime before and after a pipeline run (a process's
reaped children included: PostgreSQL's closed backends, a replaced parser child). The
worker is split into its own threads and its parser children; PostgreSQL into the client
backends (the statements: inserts, BM25 postings by trigger, HNSW inserts, commits) and
its background processes (WAL writer, checkpointer, autovacuum, I/O workers). Stages: the
worker's own per-stage thread CPU (tandem.worker.stages.BatchTimings.cpu), with what no
stage holds (Celery, the heartbeat, the sweep) as "other".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import tandem_stack as stack

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# PostgreSQL's own processes, by the title each sets (`postgres: <title>`).
_BACKGROUND = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum",
    "logical replication",
    "io worker",
    "walsummarizer",
    "archiver",
    "startup",
)


def _own_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _reaped_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def postgres_split(postmaster: int) -> dict[str, float]:
    """CPU seconds so far of PostgreSQL's client backends (live ones, plus every child the
    postmaster reaped: closed connections) and of its background processes."""
    backends, background = _reaped_seconds(postmaster), _own_seconds(postmaster)
    for child in _children(postmaster):
        title = _title(child).removeprefix("postgres: ")
        seconds = stack.process_tree_cpu_seconds(child)
        if title.startswith(_BACKGROUND):
            background += seconds
        else:
            backends += seconds
    return {"postgres_backends": backends, "postgres_background": background}


def sample(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process of the run (`pids`: worker, api, indexing_server,
    inference_server, postgres (the postmaster), redis)."""
    found = {
        name: stack.process_tree_cpu_seconds(pid)
        for name, pid in pids.items()
        if name not in ("postgres", "worker")
    }
    worker = pids["worker"]
    tree = stack.process_tree_cpu_seconds(worker)
    found["worker"] = _own_seconds(worker)
    found["worker_parser_children"] = tree - found["worker"]
    return found | postgres_split(pids["postgres"])


def per_document(
    before: dict[str, float], after: dict[str, float], documents: int, wall: float
) -> dict[str, dict[str, float]]:
    """{process: CPU ms per document, and cores over the run}."""
    return {
        name: {
            "cpu_ms_per_document": (after[name] - before[name]) / documents * 1000,
            "cores": (after[name] - before[name]) / wall,
        }
        for name in after
        if name in before
    }


def stage_cpu(
    batches: list[dict[str, Any]], worker_cpu_seconds: float, documents: int
) -> dict[str, float]:
    """The worker's thread CPU ms per document by stage; "other": its CPU no stage holds."""
    totals: dict[str, float] = {}
    for batch in batches:
        for stage, seconds in batch.get("cpu", {}).items():
            totals[stage] = totals.get(stage, 0.0) + seconds
    table = {stage: seconds / documents * 1000 for stage, seconds in sorted(totals.items())}
    # store_chunks and store_commit are parts of store, not stages of their own.
    whole = sum(v for k, v in totals.items() if not k.startswith("store_"))
    table["other"] = (worker_cpu_seconds - whole) / documents * 1000
    return table


def track_trigger_time(database_url: str) -> None:
    """Have PostgreSQL time PL/pgSQL functions (the BM25 trigger) from now on."""
    with psycopg.connect(_libpq(database_url), autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET track_functions = 'pl'")
        connection.execute("SELECT pg_reload_conf()")


def trigger_ms(database_url: str) -> float:
    """Milliseconds spent so far in the BM25 trigger function, over all backends (their
    statistics are flushed when they exit: read after the worker stopped)."""
    with psycopg.connect(_libpq(database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(total_time), 0) FROM pg_stat_user_functions "
            "WHERE funcname = 'bm25_chunks_changed'"
        ).fetchone()
    return float(row[0]) if row else 0.0


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
