"""The suite's own guards: what makes a missing browser, a broken page or a server left
running show up as a failure instead of a quiet pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import require_chromium, running_in_ci, unexpected_console_errors

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("TRUE", True), ("", False), ("0", False)]
)
def test_ci_is_read_from_the_environment(value: str, expected: bool) -> None:
    assert running_in_ci({"CI": value}) is expected


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find: no chromium, no driver
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and chromium"):
        require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="make browser"):
        require_chromium()


def test_console_filter_keeps_a_missing_script_and_drops_api_answers() -> None:
    base = "http://127.0.0.1:5000"
    expected_401 = (
        f"{base}/api/documents - Failed to load resource: the server responded with a status "
        "of 401 (Unauthorized)"
    )
    missing_module = (
        f"{base}/js/views/search.js - Failed to load resource: the server responded with a "
        "status of 404 (Not Found)"
    )
    missing_style = f"{base}/css/app.css - Failed to load resource: net::ERR_CONNECTION_REFUSED"
    script_error = f"{base}/js/main.js 12:5 Uncaught TypeError: x is undefined"
    messages = [expected_401, missing_module, missing_style, script_error]
    assert unexpected_console_errors(messages) == [missing_module, missing_style, script_error]


# Quick modules and modules whose tests all use server fixtures (heavy imports left out).
QUICK_MODULES = ("tests/test_chunking.py", "tests/test_parsing.py")
SERVER_MODULES = (
    "tests/test_e2e_ingest_search.py",
    "tests/test_index_contract.py",
    "tests/test_e2e_hostile_input.py",
)


def test_server_starting_tests_are_marked_slow() -> None:
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "not slow",
            "-p",
            "no:cacheprovider",
            *QUICK_MODULES,
            *SERVER_MODULES,
            "tests/test_model_server_http.py",
            "tests/test_cpu_priority.py",
            "tests/test_precision.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    quick = {line.split("::")[0] for line in collected.stdout.splitlines() if "::" in line}
    # In-process tests stay in the quick set; none that needs a server does.
    assert set(QUICK_MODULES) <= quick
    assert not quick & set(SERVER_MODULES), quick & set(SERVER_MODULES)
    assert "test_both_roles_embed_identically" not in collected.stdout
    # Marked by hand: their fixtures start servers but are not conftest's SERVER_FIXTURES.
    for by_hand in (
        "test_indexing_server_runs_every_thread_at_the_lowest_priority",
        "test_server_serves_the_precision_it_is_told",
        "test_prepare_adds_int8_to_an_fp32_only_cache_in_place",
    ):
        assert by_hand not in collected.stdout, by_hand
    assert "test_thread_defaults_by_role" in collected.stdout  # the quick ones stay quick


SPAWN_AND_WAIT = """
import sys, time
from pathlib import Path
from tests.support import spawn
child = spawn(["sleep", "300"], {}, Path(sys.argv[1]))
print(child.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited; a zombie waits only for its (new) parent to reap it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_server_a_test_started_dies_with_a_killed_pytest(tmp_path: Path) -> None:
    stand_in = subprocess.Popen(
        [sys.executable, "-c", SPAWN_AND_WAIT, str(tmp_path / "child.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stand_in.stdout is not None
        child = int(stand_in.stdout.readline())
        assert not _gone(child)
        os.kill(stand_in.pid, signal.SIGKILL)  # no cleanup code runs: only the kernel helps
        stand_in.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, "the test's server outlived the killed pytest"
            time.sleep(0.05)
    finally:
        stand_in.kill()
        stand_in.wait()
