"""End to end when things go wrong: killed workers, servers down, bad files, no API key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.worker.chunking import Chunker
from tandem.worker.parsing import parse_document
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
from tests.support import ServerProcess, free_port, start_model_server


@pytest.fixture(scope="module")
def api(backends: Backends, inference_server: ServerProcess) -> Iterator[ServerProcess]:
    with running(start_api(backends, inference_server.url)) as server:
        yield server


def _item_status(api: ServerProcess, attempt_id: str) -> dict[str, Any]:
    body = httpx.get(f"{api.url}/api/index-attempts/{attempt_id}").json()
    item: dict[str, Any] = body["items"][0]
    return item


def _long_document() -> bytes:
    paragraphs = [
        f"Paragraph {i} of the field report describes sample {i * 7 % 97} taken near "
        f"station {i % 13}, with readings of salinity, temperature and dissolved oxygen "
        "recorded every hour during the survey of the estuary and its tidal channels."
        for i in range(600)
    ]
    return "\n\n".join(paragraphs).encode()


def test_killed_worker_task_completes_after_restart_without_duplicates(
    api: ServerProcess, backends: Backends, indexing_server: ServerProcess, model_cache: Path
) -> None:
    data = _long_document()
    expected = Chunker.from_model_dir(model_cache / "all-MiniLM-L6-v2").chunk(
        parse_document("report.txt", data)
    )
    worker = start_worker(backends, indexing_server.url)
    try:
        attempt_id = upload(api, {"report.txt": data}).json()["attempt_id"]
        deadline = time.monotonic() + 30
        while _item_status(api, attempt_id)["status"] != "running":
            assert time.monotonic() < deadline, "the worker never started the task"
            time.sleep(0.05)
        time.sleep(0.5)  # mid-way through embedding
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(10)
        assert _item_status(api, attempt_id)["status"] == "running"
    finally:
        worker.stop()
    with running(start_worker(backends, indexing_server.url)):
        attempt = wait_attempt(api, attempt_id, timeout=180)
    assert attempt["status"] == "succeeded", attempt
    detail = httpx.get(f"{api.url}/api/documents/report.txt").json()
    assert [c["ordinal"] for c in detail["chunks"]] == list(range(len(expected)))
    assert [c["text"] for c in detail["chunks"]] == [c.text for c in expected]


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
