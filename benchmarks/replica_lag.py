"""Search from a hot standby during full-speed bulk ingest, through the real API.

One primary and one standby (`tandem.local.services.postgres_replica`, fsync off on both as
the tests run them), Redis, both model servers, a worker, and two API servers: one with
`DATABASE_READ_URLS` (reads from the standby), one without (reads from the primary).

0. A seed corpus (`--seed-documents`, 5,000 by default) indexed through the API, so that
   the ingest phase's additions grow the index by a fraction, not tenfold.
1. Idle: the same queries, alternating between the two API servers, query by query; again
   after the ingest phase (the index that much larger), so that search during ingest is
   compared with the idle primary on the index it started from and the one it ended with,
   and size for size: the phase's first fifth of searches against the idle primary before
   it, its last fifth against the idle primary after it.
2. Continuous ingest of real text (package descriptions) through the primary's API (the
   worker never idle, the queue kept short: `IngestLoad`), while (a) PostgreSQL's own
   `pg_stat_replication.replay_lag` and the WAL bytes behind are sampled on the primary,
   (b) the same queries run on the replica API, and (c) read-your-writes tries run:
   upload one document with a unique word through the primary's API, poll its attempt
   until `succeeded`, search for the word at once through the replica API; a try misses
   if the document is not in the results. The standby's CPU over the phase: its replay
   (the `startup` process) and the whole server, in cores.
3. Failover: searches run while the standby is SIGKILLed and started again: failed
   searches, and the time from its restart until the API reports it healthy.

    python -m benchmarks.replica_lag [--tries 1000] [--bulk-clients 1] [--try-clients 8]
                                     [--two-hosts]

`--two-hosts` splits the machine's CPUs in two, as two hosts would be (`cpu_split`): the
write side (primary, worker, indexing server, the primary's API server, the upload and
try clients) on one half, the read side (standby, inference server, the replica's API
server, the search client) on the other. The primary's API server then has an inference
server of its own on the write half, and the idle search client moves to the half it
asks: each search path runs on one half. Search on the replica during ingest is compared
with search on the idle primary, each on its own half (the target's question: what
replaying the primary's WAL costs the standby's searches), and the result goes to
`replica_lag_two_hosts.json`.
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from tests.replica_support import Replication, replication

from benchmarks.cpu_split import pin_this_thread, pin_tree, split_cpus
from benchmarks.processes import unwind_on_sigterm
from benchmarks.prose import package_descriptions, site_packages
from benchmarks.results_io import summarize_ms, write_result
from benchmarks.tandem_stack import (
    Backends,
    Process,
    api_server,
    descendants,
    model_servers,
    postmaster_pid,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    worker,
)
from tandem.local.services.postgres import THROWAWAY_SETTINGS
from tandem.local.services.redis import running_redis

QUERIES = (
    "command line interface for HTTP requests",
    "parse configuration files",
    "asynchronous network library",
    "type checking for Python",
    "database driver for PostgreSQL",
    "test runner plugins and fixtures",
    "serialize data to JSON quickly",
    "render templates in HTML",
)
BATCH = 20  # documents per seed upload request
# fsync off (a throwaway cluster), but commits synchronous, as `tandem up` runs them: with
# asynchronous commit a commit's WAL reaches the standby only when the WAL writer flushes
# it, up to wal_writer_delay (200 ms) later (the replay lag's p90 was 201 ms so), and
# until then the router sends a read after each succeeded attempt to the primary.
REPLICATION_SETTINGS = {**THROWAWAY_SETTINGS, "synchronous_commit": "on"}


@dataclass(frozen=True)
class IngestLoad:
    """What runs at once during the ingest phase. Each bulk client sends its next batch
    once its last one is indexed, so the queue stays short and a try waits behind at most
    the batches in flight, while the worker is never idle."""

    bulk_clients: int = 1
    bulk_batch: int = 10  # documents per bulk upload request
    try_clients: int = 8  # read-your-writes tries in flight
    search_interval: float = 0.2  # seconds between the search load's queries


ATTEMPT_GRACE_SECONDS = 120.0  # past the deadline, for attempts already sent
# Between status polls of an attempt. Seven clients polling every 20 ms kept the API busy
# on most of a core, CPU the indexing server (at the lowest priority) then did not get.
POLL_SECONDS = 0.1


def _search(client: httpx.Client, query: str, mode: str) -> tuple[float, bool]:
    started = time.perf_counter()
    response = client.post("/api/search", json={"query": query, "mode": mode})
    return time.perf_counter() - started, response.status_code == 200


def _idle_latency(
    primary_api: str, replica_api: str, rounds: int, sides: tuple[set[int], set[int]] | None
) -> dict[str, Any]:
    """Alternating queries, in a thread that (`sides`: the write and the read side's CPUs)
    moves to the side of the API server it asks, so each search's client runs on its
    path's host."""
    out: dict[str, Any] = {}

    def measure() -> None:
        out.update(_alternating(primary_api, replica_api, rounds, sides))

    thread = threading.Thread(target=measure)
    thread.start()
    thread.join()
    return out


def _alternating(
    primary_api: str, replica_api: str, rounds: int, sides: tuple[set[int], set[int]] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with (
        httpx.Client(base_url=primary_api, timeout=30) as p,
        httpx.Client(base_url=replica_api, timeout=30) as r,
    ):

        def search(client: httpx.Client, query: str, mode: str) -> float:
            if sides:
                pin_this_thread(sides[0] if client is p else sides[1])
            return _search(client, query, mode)[0]

        for mode in ("keyword", "hybrid"):
            for query in QUERIES:  # warm both
                search(p, query, mode)
                search(r, query, mode)
            on_primary: list[float] = []
            on_replica: list[float] = []
            for n in range(rounds):
                for query in QUERIES:
                    first, second = (p, r) if n % 2 == 0 else (r, p)
                    a = search(first, query, mode)
                    b = search(second, query, mode)
                    (on_primary if first is p else on_replica).append(a)
                    (on_replica if first is p else on_primary).append(b)
            out[mode] = {
                "primary_ms": summarize_ms(on_primary),
                "replica_ms": summarize_ms(on_replica),
            }
    return out


def _documents(limit: int, chars: int = 1500) -> list[tuple[str, bytes]]:
    """Real text: installed packages' descriptions, each cut to `chars` (a few chunks)."""
    found = [
        (f"{name}.txt", text[:chars].encode())
        for name, text in package_descriptions(site_packages())
        if len(text) > 400
    ]
    while len(found) < limit:  # the same texts again, under other names
        found += [(f"again-{len(found)}-{n}", t) for n, t in found[: limit - len(found)]]
    return found[:limit]


def _replay_pid(standby_postmaster: int) -> int:
    """The standby's startup process (the one replaying WAL)."""
    for pid in descendants(standby_postmaster):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"startup" in title:
            return pid
    raise RuntimeError("the standby has no startup process")


def _standby_cpu(pair: Replication) -> Callable[[], dict[str, float]]:
    """Starts measuring; the returned call gives the cores the standby's replay and the
    whole standby used since."""
    postmaster = postmaster_pid(pair.standby.data_dir)
    replay = _replay_pid(postmaster)
    started = time.monotonic()
    replay_before = process_cpu_seconds(replay)
    tree_before = process_tree_cpu_seconds(postmaster)

    def used() -> dict[str, float]:
        wall = time.monotonic() - started
        return {
            "replay_cores": (process_cpu_seconds(replay) - replay_before) / wall,
            "standby_cores": (process_tree_cpu_seconds(postmaster) - tree_before) / wall,
        }

    return used


def _sample_lag(
    pair: Replication, stop: threading.Event, lags: list[float], behind: list[int]
) -> None:
    with psycopg.connect(pair.primary.conninfo(), autocommit=True) as connection:
        while not stop.wait(0.1):
            row = connection.execute(
                "SELECT EXTRACT(EPOCH FROM coalesce(replay_lag, '0'::interval)), "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
            ).fetchone()
            if row is not None:
                lags.append(float(row[0]))
                behind.append(int(row[1]))


def _repeat(stop: threading.Event, action: Callable[[], None]) -> None:
    while not stop.is_set():
        action()


def read_counts(api_url: str) -> dict[str, float]:
    """The API's router counts so far, from its /metrics: {"target/outcome": reads} and
    the catch-up waits (`catch_up_waits`, `catch_up_seconds`) over every replica."""
    counts: dict[str, float] = {"catch_up_waits": 0.0, "catch_up_seconds": 0.0}
    text_ = httpx.get(f"{api_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text_):
        for sample in family.samples:
            if sample.name == "tandem_reads_total":
                key = f"{sample.labels['target']}/{sample.labels['outcome']}"
                counts[key] = counts.get(key, 0.0) + sample.value
            elif sample.name == "tandem_read_replica_catch_up_waits_total":
                counts["catch_up_waits"] += sample.value
            elif sample.name == "tandem_read_replica_catch_up_seconds_total":
                counts["catch_up_seconds"] += sample.value
    return counts


def _counted_since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


def _ingest_phase(
    pair: Replication,
    replica_api: str,
    upload_api: str,
    documents: list[tuple[str, bytes]],
    tries: int,
    max_seconds: float,
    load: IngestLoad,
    read_cpus: set[int] | None,
) -> dict[str, Any]:
    stop = threading.Event()
    lags: list[float] = []
    behind: list[int] = []
    searches: dict[str, list[float]] = {"keyword": [], "hybrid": []}
    failed_searches = [0]
    sampler = threading.Thread(target=_sample_lag, args=(pair, stop, lags, behind))

    def one_search(client: httpx.Client, turn: list[int]) -> None:
        mode = ("keyword", "hybrid")[turn[0] % 2]
        seconds, ok = _search(client, QUERIES[turn[0] % len(QUERIES)], mode)
        turn[0] += 1
        searches[mode].append(seconds)
        failed_searches[0] += not ok
        time.sleep(load.search_interval)

    def searcher() -> None:
        if read_cpus:
            pin_this_thread(read_cpus)
        with httpx.Client(base_url=replica_api, timeout=60) as client:
            turn = [0]
            _repeat(stop, lambda: one_search(client, turn))

    tries_done = threading.Event()
    bulk_sent = [0]

    def wait_finished(client: httpx.Client, attempt_id: str) -> str:
        while (status := client.get(f"/api/index-attempts/{attempt_id}").json()["status"]) not in (
            "succeeded",
            "failed",
        ):
            if time.monotonic() > deadline + ATTEMPT_GRACE_SECONDS:
                return "unfinished"
            time.sleep(POLL_SECONDS)
        return str(status)

    def bulk(start: int) -> None:
        """Full speed until the tries are done: the documents again and again, under new
        names each round (the index grows as in a real import). Each client sends its next
        batch once its last one is indexed (`IngestLoad`)."""
        with httpx.Client(base_url=upload_api, timeout=300) as client:
            for round_ in itertools.count():
                step = load.bulk_clients * load.bulk_batch
                for n in range(start * load.bulk_batch, len(documents), step):
                    if tries_done.is_set():
                        return
                    files = [
                        ("files", (f"r{round_}-{name}", body))
                        for name, body in documents[n : n + load.bulk_batch]
                    ]
                    response = client.post("/api/documents", files=files)
                    response.raise_for_status()
                    bulk_sent[0] += len(files)
                    wait_finished(client, response.json()["attempt_id"])

    def one_try(n: int) -> bool | None:
        if time.monotonic() > deadline:
            return None  # out of time: not tried
        word = f"zebu{secrets.token_hex(6)}"
        # Written through one API server, searched through the other (the one reading from
        # the standby): the attempt's WAL position, not a server's memory, must carry it.
        with (
            httpx.Client(base_url=upload_api, timeout=300) as client,
            httpx.Client(base_url=replica_api, timeout=300) as searcher,
        ):
            body = f"Notes on {word}, try {n}.".encode()
            attempt = client.post("/api/documents", files=[("files", (f"ryw-{n}.txt", body))])
            status = wait_finished(client, attempt.json()["attempt_id"])
            if status == "unfinished":
                return None  # not indexed in time: not a read-your-writes try
            assert status == "succeeded"
            hits = searcher.post("/api/search", json={"query": word, "mode": "keyword"}).json()
            return f"ryw-{n}.txt" in [h["document_id"] for h in hits["results"]]

    started = time.monotonic()
    deadline = started + max_seconds
    counts_before = read_counts(replica_api)
    standby_cpu = _standby_cpu(pair)
    sampler.start()
    search_thread = threading.Thread(target=searcher)
    search_thread.start()
    with (
        ThreadPoolExecutor(load.bulk_clients) as uploads,
        ThreadPoolExecutor(load.try_clients) as ryw,
    ):
        bulk_done = [uploads.submit(bulk, n) for n in range(load.bulk_clients)]
        found = [f for f in ryw.map(one_try, range(tries)) if f is not None]
        tries_done.set()
        for future in bulk_done:
            future.result()
    stop.set()
    sampler.join()
    search_thread.join()
    cpu = standby_cpu()
    # Where the replica API's reads ran and how they ended (the searches and the
    # read-your-writes tries): a read found behind was read again.
    reads = _counted_since(counts_before, read_counts(replica_api))
    lag_ms = summarize_ms(lags)
    return {
        "seconds": time.monotonic() - started,
        "bulk_documents": bulk_sent[0],
        "load": asdict(load),
        "replay_lag_ms": lag_ms,
        "wal_bytes_behind_max": max(behind, default=0),
        "search_ms": {mode: summarize_ms(s) for mode, s in searches.items()},
        # The index grows through the phase: its first and last searches ran on about the
        # index the idle pair was measured on before and after it.
        "search_ms_first_fifth": {
            mode: summarize_ms(s[: len(s) // 5]) for mode, s in searches.items()
        },
        "search_ms_last_fifth": {
            mode: summarize_ms(s[-(len(s) // 5) :]) for mode, s in searches.items()
        },
        "failed_searches": failed_searches[0],
        "read_your_writes": {"tries": len(found), "missed": found.count(False)},
        "standby_cpu": cpu,
        "reads": reads,
    }


def _failover(pair: Replication, replica_api: str) -> dict[str, Any]:
    stop = threading.Event()
    outcomes: list[bool] = []

    def keep_searching() -> None:
        with httpx.Client(base_url=replica_api, timeout=60) as client:
            while not stop.is_set():
                outcomes.append(_search(client, "database driver", "keyword")[1])

    def healthy() -> bool:
        replicas = httpx.get(f"{replica_api}/api/stats", timeout=10).json()["read_replicas"]
        return bool(replicas[0]["healthy"])

    thread = threading.Thread(target=keep_searching)
    thread.start()
    time.sleep(2.0)
    pair.kill_standby()
    time.sleep(3.0)
    restarted = time.monotonic()
    pair.start_standby()
    while not healthy():
        time.sleep(0.05)
    back_after = time.monotonic() - restarted
    time.sleep(2.0)
    stop.set()
    thread.join()
    return {
        "searches": len(outcomes),
        "failed_searches": outcomes.count(False),
        "healthy_after_restart_seconds": back_after,
    }


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=1000)
    parser.add_argument("--bulk-documents", type=int, default=300)
    parser.add_argument("--seed-documents", type=int, default=5000)
    # The tries stop here on a slow machine; the result says how many ran.
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--idle-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--bulk-clients", type=int, default=IngestLoad.bulk_clients)
    parser.add_argument("--bulk-batch", type=int, default=IngestLoad.bulk_batch)
    parser.add_argument("--try-clients", type=int, default=IngestLoad.try_clients)
    parser.add_argument("--search-interval", type=float, default=IngestLoad.search_interval)
    parser.add_argument("--two-hosts", action="store_true", help="split the CPUs in two sides")
    args = parser.parse_args()
    sides: tuple[set[int], set[int]] | None = split_cpus() if args.two_hosts else None
    with tempfile.TemporaryDirectory(prefix="tandem-replica-lag-") as scratch_name:
        scratch = Path(scratch_name)
        logs = scratch / "logs"
        logs.mkdir()
        with (
            replication(scratch, REPLICATION_SETTINGS) as pair,
            running_redis(scratch / "redis", _port()) as redis_url,
            model_servers(logs, ("inference", "indexing")) as servers,
            ExitStack() as stack,
        ):
            backends = Backends(pair.primary.url(), redis_url)
            routed = {
                "DATABASE_READ_URLS": pair.standby.url(),
                "DATABASE_READ_CHECK_SECONDS": "0.25",
            }
            inference, indexing = servers["inference"].url, servers["indexing"].url
            # Two hosts: the primary's API gets an inference server of its own, on its
            # side, so that each search path (client, API, model server, PostgreSQL)
            # runs on one side's CPUs and the idle primary is measured on the same
            # hardware as the standby.
            primary_inference = (
                stack.enter_context(model_servers(logs, ("inference",)))["inference"]
                if sides
                else servers["inference"]
            )
            plain = stack.enter_context(
                api_server(logs, backends, primary_inference.url, name="api-primary")
            )
            api = stack.enter_context(
                api_server(logs, backends, inference, routed, name="api-replica")
            )
            work = stack.enter_context(worker(logs, backends, indexing))
            if sides:
                write: list[Path | Process] = [
                    pair.primary.data_dir,
                    plain,
                    primary_inference,
                    work,
                    servers["indexing"],
                ]
                read: list[Path | Process] = [pair.standby.data_dir, servers["inference"], api]
                _pin_side(write, sides[0])
                _pin_side(read, sides[1])
                pin_this_thread(sides[0])  # the upload and try clients' threads
            seed = _documents(args.seed_documents)
            with httpx.Client(base_url=api.url, timeout=300) as client:
                for n in range(0, len(seed), BATCH):
                    files = [("files", d) for d in seed[n : n + BATCH]]
                    client.post("/api/documents", files=files).raise_for_status()
            _wait_idle(pair)
            time.sleep(20)  # warm: the servers are still settling right after start
            tables = {"before": table_state(pair)}
            idle = _idle_latency(plain.url, api.url, args.idle_rounds, sides)
            load = IngestLoad(
                args.bulk_clients, args.bulk_batch, args.try_clients, args.search_interval
            )
            ingest = _ingest_phase(
                pair,
                api.url,
                plain.url,
                _documents(args.bulk_documents),
                args.tries,
                args.max_seconds,
                load,
                sides[1] if sides else None,
            )
            _wait_idle(pair)
            tables["after"] = table_state(pair)
            idle_after = _idle_latency(plain.url, api.url, args.idle_rounds, sides)
            # The same index without the dead row versions the ingest left (whatever
            # autovacuum had reached): how much of "after" is the index's size, how much
            # its churn.
            for table in CHURNED_TABLES:
                pair.primary_sql(f"VACUUM (ANALYZE) {table}")
            pair.wait_replayed()
            tables["vacuumed"] = table_state(pair)
            idle_vacuumed = _idle_latency(plain.url, api.url, args.idle_rounds, sides)
            chunks = pair.primary_sql("SELECT count(*) FROM chunks")[0][0]
            failover = _failover(pair, api.url)
    result = {
        "seed_documents": args.seed_documents,
        "chunks_after": chunks,
        "idle": idle,
        "idle_after_ingest": idle_after,
        "idle_after_vacuum": idle_vacuumed,
        "tables": tables,
        "ingest": ingest,
        "failover": failover,
        "ratios": {
            mode: {
                "idle_replica_over_idle_primary_p50": idle[mode]["replica_ms"]["p50"]
                / idle[mode]["primary_ms"]["p50"],
                "ingest_replica_over_idle_primary_p50": ingest["search_ms"][mode]["p50"]
                / idle[mode]["primary_ms"]["p50"],
                "ingest_replica_over_idle_primary_after_p50": ingest["search_ms"][mode]["p50"]
                / idle_after[mode]["primary_ms"]["p50"],
                # Size for size: the phase's first fifth against the idle primary before
                # it, its last fifth against the idle primary after it.
                "ingest_start_replica_over_idle_primary_p50": ingest["search_ms_first_fifth"][mode][
                    "p50"
                ]
                / idle[mode]["primary_ms"]["p50"],
                "ingest_end_replica_over_idle_primary_after_p50": ingest["search_ms_last_fifth"][
                    mode
                ]["p50"]
                / idle_after[mode]["primary_ms"]["p50"],
            }
            for mode in ("keyword", "hybrid")
        },
        "postgres_settings": REPLICATION_SETTINGS,
        "setup": (
            "two hosts simulated: write and read sides each pinned to half the CPUs"
            if args.two_hosts
            else "one machine: primary, standby, both model servers, API servers and worker"
        ),
    }
    name = "replica_lag_two_hosts" if args.two_hosts else "replica_lag"
    print(write_result(name, result, args.out))


# The tables ingest rewrites: every batch updates the BM25 statistics' rows of its terms.
CHURNED_TABLES = ("chunks", "bm25_postings", "bm25_terms", "bm25_corpus")


def table_state(pair: Replication) -> dict[str, dict[str, Any]]:
    """{table: live and dead row versions, autovacuum runs so far} on the primary (its
    statistics lag the truth by up to a second)."""
    rows = pair.primary_sql(
        "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        list(CHURNED_TABLES),
    )
    return {
        name: {"live": live, "dead": dead, "autovacuums": runs} for name, live, dead, runs in rows
    }


def _pin_side(members: list[Path | Process], cpus: set[int]) -> None:
    """Pin PostgreSQL servers (by data directory) and started processes to `cpus`."""
    for member in members:
        pid = postmaster_pid(member) if isinstance(member, Path) else member.popen.pid
        pin_tree(pid, cpus)


def _port() -> int:
    from tandem.local.services.process import free_port

    return free_port()


def _wait_idle(pair: Replication) -> None:
    """Until no item waits or runs (the seed corpus is indexed)."""
    while pair.primary_sql(
        "SELECT count(*) FROM index_attempt_items WHERE status IN ('queued', 'running')"
    )[0][0]:
        time.sleep(0.5)
    pair.wait_replayed()


if __name__ == "__main__":
    main()
