"""A 1,000-document ingest survives a SIGKILLed worker: resumed within a minute with the
default lease settings, every document indexed exactly once; and two workers share an
ingest without claiming any item twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tandem.worker.stages import Stage
from tests.e2e_support import Backends, running, start_worker, wait_attempt
from tests.resume_support import (
    Database,
    check_indexed_exactly_once,
    claimed_batches,
    hold_env,
    short_text,
    wait_for_hold,
)
from tests.support import ServerProcess

DOCUMENTS = 1000
# Items of a killed worker are taken up within this long of a worker being available.
RESUME_LIMIT_SECONDS = 60.0
NO_REDELIVERY = {"TANDEM_TASK_VISIBILITY_TIMEOUT": "3600"}


def test_a_thousand_short_documents_survive_a_killed_worker_exactly_once(
    api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    documents = {f"note-{n:04d}": short_text(n) for n in range(DOCUMENTS)}
    database = Database(backends.database_url)
    database.reset()
    hold_file = tmp_path / "hold"
    # Mid-way: the worker stops after 6 committed writes (of up to 64 documents each),
    # its other thread wherever it is; then it is killed.
    held = start_worker(
        backends, indexing_server.url, NO_REDELIVERY | hold_env(Stage.COMMITTED, hold_file, 6)
    )
    try:
        response = httpx.post(
            f"{api.url}/api/documents/batch",
            json={
                "documents": [
                    {"id": d, "title": d, "text": body, "path": f"{d}.txt"}
                    for d, body in documents.items()
                ]
            },
            timeout=60,
        )
        assert response.status_code == 202, response.text
        attempt_id = response.json()["attempt_id"]
        wait_for_hold(held, hold_file)
        held.process.send_signal(signal.SIGKILL)
        held.process.wait(10)
    finally:
        held.stop()
    at_kill = database.items(attempt_id)
    stranded = {i.id for i in at_kill if i.status == "running"}
    done_at_kill = sum(i.status == "succeeded" for i in at_kill)
    assert stranded, "the kill should strand the items the worker held"
    assert 0 < done_at_kill < DOCUMENTS
    with running(start_worker(backends, indexing_server.url, NO_REDELIVERY)) as worker:
        available = time.monotonic()
        while any(
            i.claims < 2 and i.status == "running" and i.id in stranded
            for i in database.items(attempt_id)
        ):
            assert time.monotonic() - available < RESUME_LIMIT_SECONDS, "not resumed in time"
            time.sleep(0.5)
        resumed_after = time.monotonic() - available
        attempt = wait_attempt(api, attempt_id, timeout=300)
        claims = claimed_batches(worker.log())
    assert attempt["status"] == "succeeded", attempt
    assert attempt["done"] == DOCUMENTS and attempt["failed"] == 0
    assert {i for c in claims for i in c.items} >= stranded
    assert not any(c.redelivered for c in claims)
    assert {i.claims for i in database.items(attempt_id) if i.id in stranded} == {2}
    check_indexed_exactly_once(
        database,
        {d: body.encode() for d, body in documents.items()},
        model_cache,
        indexing_server.url,
        titles={d: d for d in documents},
    )
    print(f"resumed {len(stranded)} stranded items {resumed_after:.1f}s after restart")


def test_two_workers_share_an_ingest_without_claiming_an_item_twice(
    api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
    model_cache: Path,
) -> None:
    documents = {f"pair-{n:03d}": short_text(n) for n in range(300)}
    database = Database(backends.database_url)
    database.reset()
    small_batches = NO_REDELIVERY | {"TANDEM_BATCH_ITEMS": "16"}
    with (
        running(start_worker(backends, indexing_server.url, small_batches)) as first,
        running(start_worker(backends, indexing_server.url, small_batches)) as second,
    ):
        response = httpx.post(
            f"{api.url}/api/documents/batch",
            json={"documents": [{"id": d, "title": d, "text": t} for d, t in documents.items()]},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        attempt = wait_attempt(api, response.json()["attempt_id"], timeout=300)
        claims = [claimed_batches(w.log()) for w in (first, second)]
    assert attempt["status"] == "succeeded", attempt
    assert all(claims), "both workers should have claimed batches"
    claimed = [item for worker in claims for batch in worker for item in batch.items]
    assert len(claimed) == len(set(claimed)) == len(documents)
    assert {i.claims for i in database.items(attempt["id"])} == {1}
    check_indexed_exactly_once(
        database,
        {d: body.encode() for d, body in documents.items()},
        model_cache,
        indexing_server.url,
        titles={d: d for d in documents},
    )
