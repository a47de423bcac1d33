"""End to end when things go wrong: killed workers, servers down, bad files, no API key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.worker.stages import Stage
from tests.e2e_support import (
    Backends,
    running,
    search,
    start_api,
    start_worker,
    top_document,
    upload,
    wait_attempt,
)
from tests.resume_support import (
    FAST_LEASES,
    Database,
    check_indexed_exactly_once,
    claimed_batches,
    hold_env,
    long_text,
    short_text,
    wait_for_hold,
)
from tests.support import ServerProcess, free_port, start_model_server


def _item_status(api: ServerProcess, attempt_id: str) -> dict[str, Any]:
    body = httpx.get(f"{api.url}/api/index-attempts/{attempt_id}").json()
    item: dict[str, Any] = body["items"][0]
    return item


# The long document is one of 56 files: 50 short ones come first, so the first embedding
# request completes only them (the first group written) and the long one spans requests.
SHORT_FIRST, SHORT_AFTER = 50, 5


def _stage_upload() -> dict[str, bytes]:
    files = {f"pre-{n:02d}.txt": short_text(n).encode() for n in range(SHORT_FIRST)}
    files["report.txt"] = long_text().encode()
    files |= {f"post-{n:02d}.txt": short_text(100 + n).encode() for n in range(SHORT_AFTER)}
    return files


@pytest.mark.parametrize(
    "stage",
    [Stage.CLAIMED, Stage.EMBEDDED, Stage.WRITTEN, Stage.COMMITTED, Stage.FINISHED],
)
def test_a_worker_killed_at_each_stage_is_resumed_exactly_once(
    stage: Stage,
    api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    """The worker stops at `stage` (a hold in the pipeline, not a sleep) and is SIGKILLed
    there; a new worker takes the items over once their lease runs out, through the sweep:
    the broker never redelivers here (visibility timeout of an hour)."""
    files = _stage_upload()
    database = Database(backends.database_url)
    database.reset()
    hold_file = tmp_path / "hold"
    held = start_worker(
        backends, indexing_server.url, FAST_LEASES | hold_env(stage, hold_file), concurrency=1
    )
    try:
        attempt_id = upload(api, files).json()["attempt_id"]
        wait_for_hold(held, hold_file)
        at_kill = database.items(attempt_id)
        held.process.send_signal(signal.SIGKILL)
        held.process.wait(10)
    finally:
        held.stop()
    states = {i.document_id: i.status for i in at_kill}
    indexed = database.chunk_counts()
    if stage in (Stage.CLAIMED, Stage.EMBEDDED, Stage.WRITTEN):
        assert set(states.values()) == {"running"}
        assert indexed == {}  # nothing written, or the transaction died uncommitted
    elif stage is Stage.COMMITTED:
        done = {d for d, s in states.items() if s == "succeeded"}
        assert done == {f"pre-{n:02d}.txt" for n in range(SHORT_FIRST)}
        assert {s for d, s in states.items() if d not in done} == {"running"}
        assert set(indexed) == done
    else:
        assert set(states.values()) == {"succeeded"}
    with running(start_worker(backends, indexing_server.url, FAST_LEASES)) as worker:
        attempt = wait_attempt(api, attempt_id, timeout=120)
        claims = claimed_batches(worker.log())
    assert attempt["status"] == "succeeded", attempt
    assert not any(c.redelivered for c in claims), claims
    resumed = {i.id for i in at_kill if i.status == "running"}
    if resumed:
        # Taken over once the lease ran out; a recovering item is claimed alone.
        assert {i for c in claims for i in c.items} >= resumed
        assert all(len(c.items) == 1 for c in claims if set(c.items) & resumed)
        assert {i.claims for i in database.items(attempt_id) if i.id in resumed} == {2}
    else:
        assert claims == []  # the finished batch's message is never delivered again
    check_indexed_exactly_once(database, files, model_cache, indexing_server.url)


def test_a_broker_redelivery_is_told_apart_and_resumes_nothing_by_itself(
    api: ServerProcess,
    backends: Backends,
    indexing_server: ServerProcess,
    model_cache: Path,
    tmp_path: Path,
) -> None:
    """The killed worker's message comes back from Redis (visibility timeout of 1 s) marked
    redelivered; it finds the items still leased, so it claims nothing. Once the leases
    run out, the sweep's messages (not redelivered) take the items over."""
    database = Database(backends.database_url)
    database.reset()
    files = {f"echo-{n}.txt": short_text(200 + n).encode() for n in range(5)}
    redelivering = {
        "TANDEM_TASK_VISIBILITY_TIMEOUT": "1",
        "TANDEM_LEASE_SECONDS": "3600",
        "TANDEM_SWEEP_SECONDS": "1",
    }
    hold_file = tmp_path / "hold"
    held = start_worker(
        backends, indexing_server.url, redelivering | hold_env(Stage.EMBEDDED, hold_file), 1
    )
    try:
        attempt_id = upload(api, files).json()["attempt_id"]
        wait_for_hold(held, hold_file)
        held.process.send_signal(signal.SIGKILL)
        held.process.wait(10)
    finally:
        held.stop()
    with running(start_worker(backends, indexing_server.url, redelivering)) as worker:
        deadline = time.monotonic() + 60
        while "message_redelivered" not in worker.log():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        assert claimed_batches(worker.log()) == []  # still leased: nothing to take
        assert {i.claims for i in database.items(attempt_id)} == {1}
        database.expire_leases()
        attempt = wait_attempt(api, attempt_id, timeout=120)
        claims = claimed_batches(worker.log())
    assert attempt["status"] == "succeeded", attempt
    assert claims and not any(c.redelivered for c in claims)
    assert {i.claims for i in database.items(attempt_id)} == {2}
    check_indexed_exactly_once(database, files, model_cache, indexing_server.url)


def test_attempts_wait_for_the_indexing_server(
    api: ServerProcess, backends: Backends, model_cache: Path, server_logs: Path
) -> None:
    port = free_port()
    indexing = start_model_server("indexing", server_logs, port=port)
    worker = start_worker(backends, indexing.url)
    try:
        indexing.stop()
        attempt_id = upload(api, {"owl.txt": b"The barn owl hunts voles at dusk."}).json()[
            "attempt_id"
        ]
        deadline = time.monotonic() + 30
        while "waiting to retry" not in str(_item_status(api, attempt_id)["error"]):
            assert time.monotonic() < deadline, _item_status(api, attempt_id)
            time.sleep(0.2)
        assert httpx.get(f"{api.url}/api/index-attempts/{attempt_id}").json()["status"] in (
            "queued",
            "running",
        )
        indexing = start_model_server("indexing", server_logs, port=port)
        attempt = wait_attempt(api, attempt_id, timeout=120)
        assert attempt["status"] == "succeeded", attempt
        assert _item_status(api, attempt_id)["error"] is None
        assert top_document(search(api, "barn owl", mode="keyword")) == "owl.txt"
    finally:
        worker.stop()
        indexing.stop()


def test_inference_server_down_gives_flagged_keyword_results(
    api: ServerProcess, backends: Backends, indexing_server: ServerProcess
) -> None:
    with running(start_worker(backends, indexing_server.url)):
        attempt_id = upload(api, {"lynx.txt": b"The Iberian lynx hunts rabbits."}).json()[
            "attempt_id"
        ]
        wait_attempt(api, attempt_id)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with running(start_api(backends, nowhere)) as blind_api:
        result = search(blind_api, "Iberian lynx", mode="hybrid")
        assert result["degraded"] is True
        assert result["mode"] == "keyword"
        assert "unavailable" in str(result["notice"])
        assert top_document(result) == "lynx.txt"
        deadline = time.monotonic() + 15
        while (status := httpx.get(f"{blind_api.url}/api/stats").json()["model_servers"])[
            "inference"
        ] is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["inference"]["ready"] is False
    normal = search(api, "Iberian lynx", mode="hybrid")
    assert normal["degraded"] is False
    assert normal["notice"] is None


def test_bad_files_fail_alone_and_others_are_indexed(
    backends: Backends, inference_server: ServerProcess, indexing_server: ServerProcess
) -> None:
    limits = {"TANDEM_MAX_FILE_BYTES": "20000", "TANDEM_MAX_UPLOAD_BYTES": "100000"}
    with (
        running(start_api(backends, inference_server.url, env=limits)) as api,
        running(start_worker(backends, indexing_server.url)),
    ):
        response = upload(
            api,
            {
                "good.txt": b"Puffins nest in burrows on sea cliffs.",
                "broken.pdf": b"%PDF-1.4 this is not really a pdf",
                "huge.txt": b"x" * 30000,
                "tool.exe": b"MZ\x90\x00",
                "garbage.docx": os.urandom(2000),
            },
        )
        assert response.status_code == 202, response.text
        attempt = wait_attempt(api, response.json()["attempt_id"])
        assert attempt["status"] == "succeeded"
        assert attempt["failed"] == 4
        errors = {i["filename"]: i["error"] for i in attempt["items"]}
        assert errors["good.txt"] is None
        assert "not a valid PDF" in errors["broken.pdf"]
        assert "exceeds" in errors["huge.txt"]
        assert "unsupported file type" in errors["tool.exe"]
        assert errors["garbage.docx"].startswith("garbage.docx:")
        assert top_document(search(api, "puffins", mode="keyword")) == "good.txt"
        too_big = upload(api, {f"f{i}.txt": b"y" * 19000 for i in range(8)})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "payload_too_large"
        assert httpx.get(f"{api.url}/api/documents/good.txt").status_code == 200


def test_api_keys_are_required_unless_open_access(
    backends: Backends, inference_server: ServerProcess
) -> None:
    with running(start_api(backends, inference_server.url, open_access=False)) as api:
        assert httpx.get(f"{api.url}/api/health").status_code == 200
        for method, path in [
            ("GET", "/api/documents"),
            ("POST", "/api/search"),
            ("POST", "/api/documents"),
            ("GET", "/api/stats"),
            ("DELETE", "/api/documents/x"),
        ]:
            response = httpx.request(method, f"{api.url}{path}", json={"query": "x"})
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["type"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        created = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "api-key", "create", "--name", "tests"],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | backends.env(),
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert key.startswith("tdm_")
        good = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api.url}/api/documents", headers=good).status_code == 200
        bad = {"Authorization": "Bearer tdm_not-a-real-key"}
        assert httpx.get(f"{api.url}/api/documents", headers=bad).status_code == 401
