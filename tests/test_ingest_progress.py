"""`tandem ingest` of a folder of thousands of files: many bounded upload requests, and a
progress display with files/s and the time left, as a person sees it in a terminal.

The command runs on a pseudo-terminal (so Rich draws its live progress) against the real
API server and a worker.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tandem.api_client.bulk_upload import LocalFile, NameClash, collect_files, upload_batches
from tandem.db.session import normalize_url
from tests.e2e_support import Backends, running, start_api, start_worker
from tests.support import ServerProcess, die_with_pytest

FILES = 2000
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_batches_are_bounded_by_count_and_bytes(tmp_path: Path) -> None:
    sizes = [10, 10, 10, 50, 10, 200, 10]
    paths = []
    for n, size in enumerate(sizes):
        path = tmp_path / f"{n}.txt"
        path.write_bytes(b"x" * size)
        paths.append(LocalFile(path, path.name))
    groups = [[int(p.file.stem) for p in group] for group in upload_batches(paths, 3, 100)]
    # Three files at most; 100 bytes at most, except a larger file alone.
    assert groups == [[0, 1, 2], [3, 4], [5], [6]]
    with pytest.raises(ValueError, match="max_files"):
        list(upload_batches(paths, 0, 100))


def test_files_are_named_by_their_path_in_the_folder_given(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for name in (
        "README.md",
        "alpha/README.md",
        "beta/README.md",
        ".git/config",
        "a/.env",
        "b.log",
    ):
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(name)
    (docs / ".gitignore").write_text("*.log\n")
    (docs / "loop").symlink_to(docs)
    (tmp_path / "README.md").write_text("top")
    names = [f.name for f in collect_files([docs]).files]
    assert names == ["README.md", "alpha/README.md", "beta/README.md"]
    notes = tmp_path / "notes"
    (notes / "alpha").mkdir(parents=True)
    (notes / "alpha" / "README.md").write_text("notes")
    both = {f.name: f.file for f in collect_files([docs, notes, tmp_path / "README.md"]).files}
    assert both["docs/alpha/README.md"] == docs / "alpha" / "README.md"
    assert both["notes/alpha/README.md"] == notes / "alpha" / "README.md"
    assert both["README.md"] == tmp_path / "README.md"
    with pytest.raises(NameClash, match=r"both be the document 'README\.md'"):
        collect_files([docs / "alpha" / "README.md", docs / "beta" / "README.md"])


def _run_on_terminal(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `argv` with a 160-column pseudo-terminal as its stdout and stderr."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=env,
        preexec_fn=die_with_pytest,
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side closed, the process is done
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    return code, output.decode(errors="replace")


def test_ingest_of_thousands_of_files_shows_rate_and_time_left(
    api: ServerProcess, backends: Backends, indexing_server: ServerProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    for n in range(FILES):
        sub = folder / f"part-{n % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note-{n:04d}.txt").write_text(f"Note {n}: herons wait where tide pools form.")
    with running(start_worker(backends, indexing_server.url)):
        code, screen = _run_on_terminal(
            [sys.executable, "-m", "tandem.cli", "ingest", str(folder), "--api-url", api.url],
            os.environ | {"TERM": "xterm-256color", "COLUMNS": "160"},
            timeout=600,
        )
    plain = ANSI.sub("", screen)
    assert code == 0, plain[-2000:]
    # Rich redraws in place: every state it drew is in the stream.
    assert re.search(r"uploading .* 2000/2000 +[\d,.]+ files/s", plain), plain[-2000:]
    indexing = re.findall(
        r"indexing .* (\d+)/2000 +([\d,.-]+) files/s +[\d:]+ ETA ([\d:-]+)", plain
    )
    assert indexing, plain[-2000:]
    assert any(eta != "-:--:--" and 0 < int(done) < FILES for done, _, eta in indexing)
    assert re.search(rf"succeeded: {FILES} indexed, 0 failed \({FILES} files in [\d.]+ s", plain)
    documents = httpx.get(f"{api.url}/api/documents", params={"limit": 1}, timeout=10).json()
    assert documents["total"] == FILES
    # Twenty requests of a hundred files, each its own index attempt.
    engine = create_engine(normalize_url(backends.database_url))
    with engine.connect() as connection:
        sizes = connection.execute(
            text("SELECT count(*) FROM index_attempt_items GROUP BY attempt_id")
        ).all()
    engine.dispose()
    assert sorted(n for (n,) in sizes) == [100] * 20


@pytest.fixture(scope="module")
def small_api(backends: Backends, inference_server: ServerProcess) -> Iterator[ServerProcess]:
    limits = {"TANDEM_MAX_UPLOAD_BYTES": "20000"}
    with running(start_api(backends, inference_server.url, env=limits)) as server:
        yield server


def test_a_batch_too_large_for_the_api_is_split_and_an_oversized_file_fails_alone(
    small_api: ServerProcess, backends: Backends, indexing_server: ServerProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in range(30):
        (folder / f"small-{n:02d}.txt").write_text(f"Small note {n} on tides. " * 100)  # 2.5 KB
    (folder / "large.txt").write_text("A large note about harbours. " * 1200)  # 35 KB
    with running(start_worker(backends, indexing_server.url)):
        done = subprocess.run(
            [sys.executable, "-m", "tandem.cli", "ingest", str(folder), "--api-url", small_api.url],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ | {"COLUMNS": "200"},
        )
    assert done.returncode == 0, done.stderr
    # One request of 31 files is over 20,000 bytes: halves, quarters… until each fits.
    assert "large.txt: refused by the API: 413" in done.stderr
    assert "succeeded: 30 indexed, 1 failed (31 files in" in done.stderr
