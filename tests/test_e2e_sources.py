"""Folder sources on the real stack: identity by path, syncs that embed only what changed,
deletions, one sync at a time, and a worker killed mid-sync.

API -> PostgreSQL (the source, its lease) -> worker (the walk, then the index attempt's
items) -> indexing server -> PostgreSQL; search through the inference server.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tandem.db.session import normalize_url
from tests.e2e_support import Backends, running, search, start_worker, upload, wait_attempt
from tests.source_site import Resource, running_site
from tests.support import ServerProcess

SAME_NAMES = {
    "README.md": "# Handbook\n\nThe handbook of the whole team lives in this folder.",
    "alpha/README.md": "# Alpha\n\nAlpha ships the quarterly aurora telemetry dashboards.",
    "beta/README.md": "# Beta\n\nBeta maintains the zeppelin mooring scheduler for the harbour.",
    "alpha/x/README.md": "# Deep\n\nThe deepest readme explains obsidian backup rotation.",
}
LONG = "\n\n".join(
    f"Paragraph {n} of the operations manual describes procedure {n} in detail: "
    + " ".join(f"step{n}x{k} verifies the {k}th condition before continuing" for k in range(12))
    for n in range(60)
)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def _sql(backends: Backends, statement: str, **params: object) -> list[Any]:
    engine = create_engine(normalize_url(backends.database_url))
    with engine.begin() as connection:
        rows = list(connection.execute(text(statement), params))
    engine.dispose()
    return rows


def _source(api: ServerProcess, name: str) -> dict[str, Any]:
    response = httpx.get(f"{api.url}/api/sources/{name}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait_sync(
    api: ServerProcess, name: str, after: int = 0, timeout: float = 180
) -> dict[str, Any]:
    """The first sync of `name` newer than sync id `after` that finished."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        last = _source(api, name)["last_sync"]
        if last and last["id"] > after and last["status"] in ("succeeded", "failed"):
            return last
        time.sleep(0.3)
    raise AssertionError(f"no finished sync of {name} after {after}: {last}")


def _sync(api: ServerProcess, name: str) -> dict[str, Any]:
    before = _source(api, name)["last_sync"]
    response = httpx.post(f"{api.url}/api/sources/{name}/sync", timeout=10)
    assert response.status_code == 202, response.text
    return _wait_sync(api, name, before["id"] if before else 0)


def _items(api: ServerProcess, sync: dict[str, Any]) -> list[dict[str, Any]]:
    attempt = httpx.get(f"{api.url}/api/index-attempts/{sync['attempt_id']}", timeout=10).json()
    items: list[dict[str, Any]] = attempt["items"]
    return items


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("team-docs")
    _write(root, SAME_NAMES | {"ops/manual.txt": LONG, ".hidden/secret.md": "never indexed"})
    return root


@pytest.fixture(scope="module")
def synced(api: ServerProcess, worker: ServerProcess, tree: Path) -> dict[str, Any]:
    response = httpx.post(
        f"{api.url}/api/sources",
        json={"name": "docs", "kind": "folder", "path": str(tree)},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return _wait_sync(api, "docs")


def test_files_of_one_name_in_several_folders_are_several_documents(
    api: ServerProcess, synced: dict[str, Any]
) -> None:
    assert synced["status"] == "succeeded", synced
    assert (synced["added"], synced["failed"], synced["deleted"]) == (5, 0, 0)
    listed = httpx.get(f"{api.url}/api/documents", params={"limit": 50}, timeout=10).json()
    ids = {d["id"]: (d["source"], d["path"]) for d in listed["items"]}
    assert ids == {f"docs:{p}": ("docs", p) for p in [*SAME_NAMES, "ops/manual.txt"]}
    hit = search(api, "zeppelin mooring", mode="keyword")["results"][0]
    assert (hit["document_id"], hit["source"], hit["path"]) == (
        "docs:beta/README.md",
        "docs",
        "beta/README.md",
    )


def test_a_second_sync_of_an_unchanged_folder_embeds_nothing(
    api: ServerProcess, synced: dict[str, Any]
) -> None:
    again = _sync(api, "docs")
    assert again["status"] == "succeeded", again
    assert (again["added"], again["updated"], again["unchanged"], again["deleted"]) == (0, 0, 5, 0)
    assert _items(api, again) == []


def test_an_edited_paragraph_re_embeds_only_its_chunks(
    api: ServerProcess, synced: dict[str, Any], tree: Path, backends: Backends
) -> None:
    chunks = _sql(backends, "SELECT count(*) FROM chunks WHERE document_id = 'docs:ops/manual.txt'")
    assert chunks[0][0] >= 30  # a long document: many chunks to keep
    manual = tree / "ops" / "manual.txt"
    manual.write_text(LONG.replace("Paragraph 30 of", "Paragraph thirty, rewritten, of"))
    edited = _sync(api, "docs")
    assert (edited["updated"], edited["unchanged"]) == (1, 4), edited
    [item] = _items(api, edited)
    assert item["document_id"] == "docs:ops/manual.txt"
    assert item["outcome"] == "updated"
    assert 1 <= item["embedded_chunks"] <= 3, item
    assert search(api, "thirty rewritten", mode="keyword")["results"][0]["path"] == "ops/manual.txt"


def test_deleted_and_added_files_follow_the_folder(
    api: ServerProcess, synced: dict[str, Any], tree: Path
) -> None:
    (tree / "alpha" / "x" / "README.md").unlink()
    _write(tree, {"gamma/notes.md": "# Gamma\n\nGamma keeps the narwhal migration ledger."})
    changed = _sync(api, "docs")
    assert (changed["added"], changed["deleted"], changed["updated"]) == (1, 1, 0), changed
    gone = httpx.get(f"{api.url}/api/documents/docs:alpha/x/README.md", timeout=10)
    assert gone.status_code == 404
    assert search(api, "obsidian backup", mode="keyword")["results"] == []
    assert search(api, "narwhal ledger", mode="keyword")["results"][0]["path"] == "gamma/notes.md"


def test_a_missing_folder_fails_the_sync_and_deletes_nothing(
    api: ServerProcess, synced: dict[str, Any], tree: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "not-mounted"
    response = httpx.post(
        f"{api.url}/api/sources",
        json={"name": "gone", "kind": "folder", "path": str(missing)},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    failed = _wait_sync(api, "gone")
    assert failed["status"] == "failed"
    assert any("not-mounted" in e for e in failed["errors"]), failed
    # The docs source is untouched by another source's failure.
    assert search(api, "zeppelin mooring", mode="keyword")["results"]


def test_sources_are_listed_and_removed_with_their_documents(
    api: ServerProcess, synced: dict[str, Any], tree: Path
) -> None:
    response = httpx.post(
        f"{api.url}/api/sources",
        json={"name": "copy", "kind": "folder", "path": str(tree / "beta")},
        timeout=10,
    )
    assert response.status_code == 201
    assert _wait_sync(api, "copy")["added"] == 1
    listed = {s["name"]: s for s in httpx.get(f"{api.url}/api/sources", timeout=10).json()["items"]}
    assert {"upload", "docs", "copy"} <= set(listed)
    assert listed["copy"]["settings"]["path"] == str(tree / "beta")
    assert httpx.delete(f"{api.url}/api/sources/copy", timeout=10).status_code == 204
    assert httpx.get(f"{api.url}/api/documents/copy:README.md", timeout=10).status_code == 404
    assert httpx.get(f"{api.url}/api/sources/copy", timeout=10).status_code == 404
    assert httpx.delete(f"{api.url}/api/sources/upload", timeout=10).status_code == 422
    duplicate = httpx.post(
        f"{api.url}/api/sources",
        json={"name": "docs", "kind": "folder", "path": str(tree)},
        timeout=10,
    )
    assert duplicate.status_code == 409


def test_bad_sources_are_refused_with_a_reason(api: ServerProcess) -> None:
    cases = [
        {"name": "Bad Name", "kind": "folder", "path": "/srv"},
        {"name": "rel", "kind": "folder", "path": "relative/dir"},
        {"name": "w", "kind": "web", "url": "ftp://example.invalid/"},
        {"name": "e", "kind": "folder", "path": "/srv", "every": "soon"},
    ]
    for body in cases:
        response = httpx.post(f"{api.url}/api/sources", json=body, timeout=10)
        assert response.status_code == 422, (body, response.text)


def test_two_workers_asked_at_once_run_one_sync(
    api: ServerProcess,
    synced: dict[str, Any],
    backends: Backends,
    indexing_server: ServerProcess,
) -> None:
    before = _source(api, "docs")["last_sync"]["id"]
    with running(start_worker(backends, indexing_server.url)):
        for _ in range(3):
            assert httpx.post(f"{api.url}/api/sources/docs/sync", timeout=10).status_code == 202
        _wait_sync(api, "docs", before)
        time.sleep(1.0)
        _wait_sync(api, "docs", before)
    runs = _sql(
        backends,
        "SELECT id, started_at, finished_at FROM source_syncs WHERE source = 'docs' AND id > :id "
        "ORDER BY id",
        id=before,
    )
    # Three requests run at most three syncs (one made while a sync runs folds into the
    # next), and no two ever overlap, though two workers poll.
    assert 1 <= len(runs) <= 3
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at


def test_a_worker_killed_mid_sync_is_taken_over_without_duplicates(
    api: ServerProcess,
    synced: dict[str, Any],
    backends: Backends,
    indexing_server: ServerProcess,
    tmp_path: Path,
) -> None:
    big = tmp_path / "big"
    _write(big, {f"part{n // 50}/note{n}.txt": f"note {n} mentions token{n}" for n in range(400)})
    fast = {"TANDEM_SYNC_LEASE_SECONDS": "3", "TANDEM_SWEEP_SECONDS": "0.5"}
    victim = start_worker(backends, indexing_server.url, env=fast)
    try:
        response = httpx.post(
            f"{api.url}/api/sources", json={"name": "big", "kind": "folder", "path": str(big)}
        )
        assert response.status_code == 201
        deadline = time.monotonic() + 60
        while not _sql(backends, "SELECT 1 FROM source_entries WHERE source = 'big' LIMIT 1"):
            assert time.monotonic() < deadline, "the sync never started"
            time.sleep(0.05)
        victim.process.send_signal(signal.SIGKILL)
    finally:
        victim.stop()
    with running(start_worker(backends, indexing_server.url, env=fast)):
        done = _wait_sync(api, "big", timeout=240)
        assert done["status"] == "succeeded", done
        deadline = time.monotonic() + 240
        while _sql(
            backends,
            "SELECT 1 FROM index_attempt_items WHERE source = 'big' "
            "AND status IN ('queued', 'running') LIMIT 1",
        ):
            assert time.monotonic() < deadline, "items of the big source never finished"
            time.sleep(0.5)
    statuses = [
        r[0] for r in _sql(backends, "SELECT status FROM source_syncs WHERE source = 'big'")
    ]
    assert "interrupted" in statuses or len(statuses) == 1
    counts = _sql(
        backends,
        "SELECT count(*), count(DISTINCT path) FROM documents WHERE source = 'big'",
    )[0]
    assert tuple(counts) == (400, 400)
    per_document = _sql(
        backends,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM chunks WHERE source = 'big' "
        "GROUP BY document_id, ordinal) s",
    )
    assert per_document[0][0] == 1


def test_uploads_keep_their_folders_and_an_unchanged_upload_costs_nothing(
    api: ServerProcess, worker: ServerProcess
) -> None:
    files = {
        "tree/alpha/README.md": b"# A\n\nAlpha tends the lighthouse lenses.",
        "tree/beta/README.md": b"# B\n\nBeta repairs the carillon bells.",
        "../escape.txt": b"never stored",
    }
    refused = upload(api, files)
    assert refused.status_code == 422 and "'..'" in refused.text
    del files["../escape.txt"]
    first = wait_attempt(api, upload(api, files).json()["attempt_id"])
    assert [(i["document_id"], i["outcome"]) for i in first["items"]] == [
        ("tree/alpha/README.md", "added"),
        ("tree/beta/README.md", "added"),
    ]
    again = wait_attempt(api, upload(api, files).json()["attempt_id"])
    assert [(i["outcome"], i["embedded_chunks"]) for i in again["items"]] == [("unchanged", 0)] * 2
    assert search(api, "carillon bells", mode="keyword")["results"][0]["path"] == (
        "tree/beta/README.md"
    )


def _page(title: str, body: str, links: tuple[str, ...] = (), etag: str = "") -> Resource:
    anchors = "".join(f'<p><a href="{link}">{link}</a></p>' for link in links)
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p>{anchors}"
    return Resource(f"{html}</body></html>".encode(), etag=f'"{etag or title}"')


def test_a_web_source_fetches_and_embeds_only_what_changed(
    api: ServerProcess, worker: ServerProcess
) -> None:
    with running_site() as site:
        pages = {
            f"/docs/p{n}.html": f"Page {n} explains the kestrel{n} falconry rule" for n in range(6)
        }
        links = tuple(pages)
        site.resources["/docs/"] = _page("Falconry guide", "The index of the guide.", links)
        for path, text_ in pages.items():
            site.resources[path] = _page(path, text_, ("/docs/",))
        site.resources["/elsewhere.html"] = _page("Out of scope", "never crawled")
        source = {
            "name": "falconry",
            "kind": "web",
            "url": site.url("/docs/"),
            "requests_per_second": 50,
        }
        assert httpx.post(f"{api.url}/api/sources", json=source, timeout=10).status_code == 201
        first = _wait_sync(api, "falconry")
        assert (first["status"], first["added"], first["failed"]) == ("succeeded", 7, 0), first
        hit = search(api, "kestrel3 falconry", mode="keyword")["results"][0]
        assert (hit["source"], hit["path"]) == ("falconry", site.url("/docs/p3.html"))

        site.forget_requests()
        site.resources["/docs/p2.html"] = _page(
            "/docs/p2.html", "Page 2 now covers merlins", ("/docs/",), "v2"
        )
        del site.resources["/docs/p5.html"]
        second = _sync(api, "falconry")
        assert (second["updated"], second["unchanged"], second["deleted"]) == (1, 5, 1), second
        # Conditional GETs: only the changed page's body crossed the wire.
        bodies = [r.path for r in site.requests if r.status == 200 and r.body_bytes]
        assert bodies == ["/docs/p2.html"], site.requests
        [item] = _items(api, second)
        assert item["filename"] == site.url("/docs/p2.html")
        assert search(api, "kestrel5", mode="keyword")["results"] == []


def test_the_cli_adds_lists_syncs_and_removes_a_source(
    api: ServerProcess, worker: ServerProcess, tmp_path: Path
) -> None:
    _write(tmp_path / "cli", {"a.txt": "the albatross count", "b/c.txt": "the cormorant count"})
    env = os.environ | {"TANDEM_API_URL": api.url}

    def tandem(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tandem.cli", "sources", *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )

    added = tandem("add", "folder", str(tmp_path / "cli"), "--name", "cli", "--every", "1h")
    assert added.returncode == 0, added.stderr
    assert "added folder source 'cli', every 1h" in added.stderr
    synced = tandem("sync", "cli", "--wait")
    assert synced.returncode == 0, synced.stderr
    assert "succeeded:" in synced.stderr and "2 unchanged" in synced.stderr, synced.stderr
    listed = tandem("list")
    assert listed.returncode == 0 and "cli" in listed.stderr, listed.stderr
    assert tandem("sync", "nothing-here").returncode == 1
    assert tandem("add", "folder", "x", "--name", "Bad Name").returncode == 2
    assert tandem("remove", "cli").returncode == 0
    assert httpx.get(f"{api.url}/api/documents/cli:a.txt", timeout=10).status_code == 404
