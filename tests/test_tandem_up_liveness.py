"""The real `tandem up`: it keys both model servers with a key kept in the data dir (the
API server and the worker send it, so ingest and semantic search work end to end), it
restarts a worker whose heartbeat goes stale, and when it is itself SIGKILLed, none of its
services outlives it, even stopped ones (SIGSTOP: no signal but SIGKILL acts on them)."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests import test_tandem_up
from tests.e2e_support import top_document
from tests.test_tandem_up import RunningUp

pytestmark = pytest.mark.slow

tandem_up = test_tandem_up.tandem_up  # the fixture: the real `tandem up`, on free ports
STALE_SECONDS = 6
DOCUMENTS = [
    {"id": "tides", "title": "Tides", "text": "The moon's gravity raises the ocean tides."},
    {"id": "bread", "title": "Bread", "text": "Yeast makes bread dough rise before baking."},
]


@pytest.fixture
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read by `tandem up` (its supervisor's limit) and passed on to its worker."""
    monkeypatch.setenv("TANDEM_WORKER_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("TANDEM_WORKER_STALE_SECONDS", str(STALE_SECONDS))


@pytest.fixture
def up(quick_heartbeat: None, tandem_up: RunningUp) -> RunningUp:
    return tandem_up


def banner_url(printed: list[str], label: str) -> str:
    match = next(re.match(rf"  {label} +(http://\S+)", line) for line in printed if label in line)
    assert match is not None
    return match[1]


def session_of(pid: int) -> int | None:
    """The session of a live (not zombie) process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[3])


def survivors(sessions: set[int]) -> list[int]:
    """Live processes in those sessions: each service leads its own (PostgreSQL's
    backends are in its postmaster's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) in sessions:
            found.append(int(entry.name))
    return found


def test_up_keys_the_model_servers_restarts_a_stale_worker_and_dies_with_its_services(
    up: RunningUp,
) -> None:
    printed = up.lines_until("Press Ctrl-C to stop.")

    key_file = up.data_dir / "model-server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 40
    for label in ("inference model server", "indexing model server"):
        url = banner_url(printed, label)
        body = {"texts": ["tides"]}
        assert httpx.post(f"{url}/encoder/bi-encoder-embed", json=body).status_code == 401
        keyed = {"Authorization": f"Bearer {key}"}
        answered = httpx.post(f"{url}/encoder/bi-encoder-embed", json=body, headers=keyed)
        assert answered.status_code == 200
        assert httpx.get(f"{url}/api/health").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 200

    # The worker embeds on the indexing server and the API on the inference server, keyed.
    sent = httpx.post(f"{up.api_url}/api/documents/batch", json={"documents": DOCUMENTS})
    assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 120
    attempt_url = f"{up.api_url}/api/index-attempts/{sent.json()['attempt_id']}"
    while (attempt := httpx.get(attempt_url).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, attempt
        time.sleep(0.2)
    assert attempt["status"] == "succeeded", attempt
    query = {"query": "why does the sea rise and fall", "mode": "semantic"}
    found = httpx.post(f"{up.api_url}/api/search", json=query, timeout=30).json()
    assert found["degraded"] is False and top_document(found) == "tides", found

    heartbeat = up.data_dir / "run" / "background-worker.heartbeat"
    assert time.time() - heartbeat.stat().st_mtime < STALE_SECONDS / 2
    worker = up.pids()["background-worker"]
    os.kill(worker, signal.SIGSTOP)  # frozen: not even faulthandler's thread runs
    assert re.fullmatch(
        r" ! background-worker made no progress for \d+ s \(heartbeat\); killing it",
        up.next_line(),
    )
    assert up.next_line() == " ! background-worker was killed by SIGKILL; restarting in 1 s"
    restarted = up.next_line()
    assert re.fullmatch(r" ✓ background-worker +\S.* \(\d+\.\d s, restart 1\)", restarted)
    assert up.pids()["background-worker"] != worker

    pids = up.pids()
    assert len(pids) == 7
    for pid in pids.values():
        os.kill(pid, signal.SIGSTOP)
    up.process.kill()
    up.process.wait()
    deadline = time.monotonic() + 5
    while survivors(set(pids.values())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors(set(pids.values())) == []
