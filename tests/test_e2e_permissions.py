"""Users, groups, scoped keys and per-document access on the real stack (keys required):
the CLI makes principals and keys, the API enforces scopes, and search, listing and reads
return only what each user may read; revocation, expiry and group changes take effect
within the key cache's lifetime."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tandem.db.session import normalize_url
from tests.e2e_support import Backends, running, start_api, wait_attempt
from tests.support import ServerProcess

CACHE_SECONDS = 5.5  # the key cache's lifetime, and a little


def tandem(backends: Backends, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | backends.env(),
    )


def key(backends: Backends, *args: str) -> str:
    made = tandem(backends, "api-key", "create", *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[0]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def keyed_api(backends: Backends, inference_server: ServerProcess) -> Iterator[ServerProcess]:
    with running(start_api(backends, inference_server.url, open_access=False)) as server:
        yield server


@pytest.fixture(scope="module")
def keys(backends: Backends) -> dict[str, str]:
    for args in (
        ("users", "add", "root", "--admin"),
        ("users", "add", "alice"),
        ("users", "add", "bob"),
        ("groups", "add", "eng", "--member", "alice"),
    ):
        made = tandem(backends, *args)
        assert made.returncode == 0, made.stderr
    return {
        "admin": key(backends, "--user", "root", "--scope", "admin"),
        "alice": key(backends, "--user", "alice", "--scope", "search"),
        "alice-ingest": key(backends, "--user", "alice", "--scope", "ingest"),
        "bob": key(backends, "--user", "bob", "--scope", "ingest"),
    }


@pytest.fixture(scope="module")
def corpus(keyed_api: ServerProcess, worker: ServerProcess, keys: dict[str, str]) -> None:
    documents = [
        ("public-note", "The canteen serves lentil soup on Fridays.", None),
        (
            "eng-plan",
            "The lentil migration plan for the storage cluster.",
            {"public": False, "groups": ["eng"]},
        ),
        ("bob-diary", "Bob's lentil recipe, private.", {"public": False, "users": ["bob"]}),
    ]
    body = {
        "documents": [
            {"id": i, "title": i, "text": t} | ({"access": a} if a else {}) for i, t, a in documents
        ]
    }
    response = httpx.post(
        f"{keyed_api.url}/api/documents/batch", json=body, headers=auth(keys["admin"]), timeout=30
    )
    assert response.status_code == 202, response.text
    attempt = wait_attempt(keyed_api, response.json()["attempt_id"], headers=auth(keys["admin"]))
    assert attempt["status"] == "succeeded", attempt


def _found(api: ServerProcess, token: str, mode: str = "keyword") -> set[str]:
    response = httpx.post(
        f"{api.url}/api/search",
        json={"query": "lentil", "mode": mode},
        headers=auth(token),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {h["document_id"] for h in response.json()["results"]}


def _listed(api: ServerProcess, token: str) -> set[str]:
    body: dict[str, Any] = httpx.get(
        f"{api.url}/api/documents", headers=auth(token), timeout=10
    ).json()
    return {d["id"] for d in body["items"]}


def test_each_user_finds_lists_and_reads_only_what_they_may(
    keyed_api: ServerProcess, keys: dict[str, str], corpus: None
) -> None:
    expected = {
        "admin": {"public-note", "eng-plan", "bob-diary"},
        "alice": {"public-note", "eng-plan"},
        "bob": {"public-note", "bob-diary"},
    }
    for who, allowed in expected.items():
        for mode in ("keyword", "semantic", "hybrid"):
            assert _found(keyed_api, keys[who], mode) == allowed, (who, mode)
        assert _listed(keyed_api, keys[who]) == allowed, who
    hidden = httpx.get(
        f"{keyed_api.url}/api/documents/bob-diary", headers=auth(keys["alice"]), timeout=10
    )
    assert hidden.status_code == 404
    me = httpx.get(f"{keyed_api.url}/api/me", headers=auth(keys["alice"]), timeout=10).json()
    assert (me["user"], me["scope"], me["reads_everything"]) == ("alice", "search", False)


def test_scopes_are_enforced(keyed_api: ServerProcess, keys: dict[str, str], corpus: None) -> None:
    url = keyed_api.url
    upload = httpx.post(
        f"{url}/api/documents",
        files=[("files", ("n.txt", b"a note"))],
        headers=auth(keys["alice"]),
        timeout=10,
    )
    assert upload.status_code == 403 and "scope" in upload.json()["error"]["message"]
    deleting = httpx.delete(f"{url}/api/documents/public-note", headers=auth(keys["alice"]))
    assert deleting.status_code == 403
    users = httpx.post(f"{url}/api/users", json={"name": "eve"}, headers=auth(keys["bob"]))
    assert users.status_code == 403
    made = httpx.post(f"{url}/api/users", json={"name": "carol"}, headers=auth(keys["admin"]))
    assert made.status_code == 201
    folder = httpx.post(
        f"{url}/api/sources",
        json={"name": "etc", "kind": "folder", "path": "/etc"},
        headers=auth(keys["bob"]),
    )
    assert folder.status_code == 403  # a folder of the workers' host: admins only
    # An ingest key deletes its own documents, not another user's.
    mine = httpx.post(
        f"{url}/api/documents/batch",
        json={"documents": [{"id": "bob-note", "title": "n", "text": "bob's own note"}]},
        headers=auth(keys["bob"]),
    )
    assert mine.status_code == 202
    theirs = httpx.post(
        f"{url}/api/documents/batch",
        json={"documents": [{"id": "bob-note", "title": "n", "text": "overwritten"}]},
        headers=auth(keys["alice-ingest"]),
    )
    assert theirs.status_code == 403


def test_group_changes_revocation_and_expiry_take_effect_within_seconds(
    keyed_api: ServerProcess, keys: dict[str, str], corpus: None, backends: Backends
) -> None:
    assert "eng-plan" in _found(keyed_api, keys["alice"])
    left = tandem(backends, "groups", "remove-member", "eng", "alice")
    assert left.returncode == 0, left.stderr
    time.sleep(CACHE_SECONDS)
    assert _found(keyed_api, keys["alice"]) == {"public-note"}

    doomed = key(backends, "--user", "bob", "--scope", "search", "--name", "doomed")
    assert _found(keyed_api, doomed) == {"public-note", "bob-diary"}
    assert tandem(backends, "api-key", "revoke", doomed).returncode == 0
    time.sleep(CACHE_SECONDS)
    refused = httpx.post(
        f"{keyed_api.url}/api/search", json={"query": "lentil"}, headers=auth(doomed)
    )
    assert refused.status_code == 401

    expiring = key(backends, "--user", "bob", "--scope", "search", "--expires", "1h")
    assert _found(keyed_api, expiring)
    engine = create_engine(normalize_url(backends.database_url))
    with engine.begin() as connection:  # an hour passes
        connection.execute(
            text(
                "UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE name = 'default' "
                "AND expires_at IS NOT NULL"
            )
        )
    engine.dispose()
    time.sleep(CACHE_SECONDS)
    expired = httpx.post(
        f"{keyed_api.url}/api/search", json={"query": "lentil"}, headers=auth(expiring)
    )
    assert expired.status_code == 401
    listed = tandem(backends, "api-key", "list")
    assert listed.returncode == 0 and "revoked" in listed.stderr and "expired" in listed.stderr


def test_a_sources_access_changes_without_re_embedding(
    keyed_api: ServerProcess, keys: dict[str, str], corpus: None, backends: Backends, tmp_path: Any
) -> None:
    (tmp_path / "memo.txt").write_text("The lentil budget memo for the eng team.")
    source = httpx.post(
        f"{keyed_api.url}/api/sources",
        json={
            "name": "memos",
            "kind": "folder",
            "path": str(tmp_path),
            "access": {"public": False, "users": ["bob"]},
        },
        headers=auth(keys["admin"]),
    )
    assert source.status_code == 201, source.text
    deadline = time.monotonic() + 120
    while "memos:memo.txt" not in _found(keyed_api, keys["admin"]):
        assert time.monotonic() < deadline, "the memo was never indexed"
        time.sleep(0.5)
    assert "memos:memo.txt" in _found(keyed_api, keys["bob"])
    assert "memos:memo.txt" not in _found(keyed_api, keys["alice"])
    engine = create_engine(normalize_url(backends.database_url))
    with engine.connect() as connection:
        before = connection.execute(
            text("SELECT embedding::text FROM chunks WHERE document_id = 'memos:memo.txt'")
        ).scalar_one()
    changed = httpx.put(
        f"{keyed_api.url}/api/sources/memos/access",
        json={"access": {"public": True}},
        headers=auth(keys["admin"]),
    )
    assert changed.status_code == 200 and changed.json()["access"]["public"] is True
    assert "memos:memo.txt" in _found(keyed_api, keys["alice"])
    with engine.connect() as connection:
        after = connection.execute(
            text("SELECT embedding::text FROM chunks WHERE document_id = 'memos:memo.txt'")
        ).scalar_one()
    engine.dispose()
    assert after == before


def test_an_upload_carries_its_access_form_field(
    keyed_api: ServerProcess, keys: dict[str, str], corpus: None
) -> None:
    sent = httpx.post(
        f"{keyed_api.url}/api/documents",
        files=[("files", ("bob/lentil-notes.txt", b"Bob's lentil stock count."))],
        data={"access": '{"public": false}'},
        headers=auth(keys["bob"]),
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    done = wait_attempt(keyed_api, sent.json()["attempt_id"], headers=auth(keys["bob"]))
    assert done["status"] == "succeeded", done
    assert "bob/lentil-notes.txt" in _found(keyed_api, keys["bob"])  # its uploader reads it
    assert "bob/lentil-notes.txt" not in _found(keyed_api, keys["alice"])
    bad = httpx.post(
        f"{keyed_api.url}/api/documents",
        files=[("files", ("x.txt", b"x"))],
        data={"access": '{"users": ["nobody-here"]}'},
        headers=auth(keys["bob"]),
        timeout=30,
    )
    assert bad.status_code == 422 and "nobody-here" in bad.text
