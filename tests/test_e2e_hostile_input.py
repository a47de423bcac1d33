"""Hostile and awkward uploads end to end, through the real API, worker and index: markup in
document text comes back escaped in snippets; filenames with paths, duplicates and too
many files are handled as the API promises."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e_support import (
    search,
    upload,
    wait_attempt,
)
from tests.hostile_text import HOSTILE_FILENAME, HOSTILE_QUERY, HOSTILE_TEXT
from tests.support import ServerProcess

MAX_FILES = 4
REAL_MARK = re.compile(r"</?mark>")


def hostile_upload() -> dict[str, bytes]:
    return {HOSTILE_FILENAME: HOSTILE_TEXT.encode()}


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    return {"TANDEM_MAX_FILES_PER_UPLOAD": str(MAX_FILES)}


@pytest.fixture(scope="module")
def hostile_document(api: ServerProcess, worker: ServerProcess) -> dict[str, Any]:
    accepted = upload(api, hostile_upload())
    assert accepted.status_code == 202, accepted.text
    attempt = wait_attempt(api, accepted.json()["attempt_id"])
    assert attempt["status"] == "succeeded", attempt
    return attempt


def unmarked(snippet: str) -> str:
    """The snippet's text as a browser shows it, with the <mark> tags taken out."""
    without_marks = REAL_MARK.sub("", snippet)
    assert "<" not in without_marks and ">" not in without_marks, snippet
    return html.unescape(without_marks)


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_snippets_escape_markup_from_the_document(
    api: ServerProcess, hostile_document: dict[str, Any], mode: str
) -> None:
    result = search(api, HOSTILE_QUERY, mode=mode, limit=5)
    hit = next(h for h in result["results"] if h["document_id"] == HOSTILE_FILENAME)
    snippet = hit["snippet"]
    # The only tags are the API's own <mark>s, each around a word of the query...
    marked = re.findall(r"<mark>(.*?)</mark>", snippet)
    assert marked, snippet
    assert all(re.fullmatch(r"\w+", word) for word in marked), marked
    assert {"heron", "script", "onerror", "bitterns"} <= {w.lower() for w in marked}
    # ...and every character of the document's own markup comes back as text.
    assert unmarked(snippet).strip("…") == " ".join(HOSTILE_TEXT.split())
    assert "&lt;<mark>script</mark>&gt;window.xssRan = 1&lt;/<mark>script</mark>&gt;" in snippet
    assert "&lt;mark&gt;<mark>heron</mark>&lt;/mark&gt;" in snippet
    assert "wet&lt;b&gt;lands&lt;/b&gt;" in snippet


def test_a_filename_with_markup_is_stored_and_served_as_data(
    api: ServerProcess, hostile_document: dict[str, Any]
) -> None:
    # JSON carries the name unchanged, as data: the page must render it as text.
    (item,) = hostile_document["items"]
    assert item["filename"] == item["document_id"] == HOSTILE_FILENAME
    listed = httpx.get(f"{api.url}/api/documents", params={"limit": 200}).json()
    assert HOSTILE_FILENAME in {d["id"] for d in listed["items"]}
    document = httpx.get(f"{api.url}/api/documents/{quote(HOSTILE_FILENAME)}")
    assert document.status_code == 200
    assert document.json()["chunks"][0]["text"] == HOSTILE_TEXT


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("/var/tmp/absolute.txt", "var/tmp/absolute.txt"),
        ("docs//./guide.txt", "docs/guide.txt"),
    ],
)
def test_filenames_with_paths_keep_their_folders_inside_the_upload_source(
    api: ServerProcess, worker: ServerProcess, sent: str, stored: str
) -> None:
    accepted = upload(api, {sent: f"Kingfishers perch by {stored}.".encode()})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["documents"] == [{"document_id": stored, "filename": stored}]
    attempt = wait_attempt(api, accepted.json()["attempt_id"])
    assert attempt["status"] == "succeeded", attempt
    document = httpx.get(f"{api.url}/api/documents/{stored}")
    assert document.status_code == 200
    assert document.json()["chunks"][0]["text"] == f"Kingfishers perch by {stored}."


@pytest.mark.parametrize("sent", ["../../etc/passwd.txt", "..\\..\\windows.txt", "a/../b.txt"])
def test_a_path_that_climbs_out_is_refused(api: ServerProcess, sent: str) -> None:
    refused = upload(api, {sent: b"text"})
    assert refused.status_code == 422, refused.text
    assert "'..'" in refused.json()["error"]["message"]


@pytest.mark.parametrize("name", ["..", ".", "/", "C:\\", "a/.."])
def test_a_filename_with_no_name_left_is_refused(api: ServerProcess, name: str) -> None:
    refused = upload(api, {name: b"text"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["type"] == "validation_error"


def test_two_files_with_one_name_leave_one_whole_document(
    api: ServerProcess, worker: ServerProcess
) -> None:
    versions = ["Swifts sleep on the wing.", "Swallows skim the pond for insects."]
    accepted = httpx.post(
        f"{api.url}/api/documents",
        files=[("files", ("twin.txt", text.encode())) for text in versions],
        timeout=60,
    )
    assert accepted.status_code == 202, accepted.text
    attempt = wait_attempt(api, accepted.json()["attempt_id"])
    assert [i["document_id"] for i in attempt["items"]] == ["twin.txt", "twin.txt"]
    assert attempt["status"] == "succeeded", attempt
    # One document, holding one version whole: never both, never a mix of their chunks.
    documents = httpx.get(f"{api.url}/api/documents", params={"limit": 200}).json()["items"]
    assert [d["id"] for d in documents].count("twin.txt") == 1
    chunks = httpx.get(f"{api.url}/api/documents/twin.txt").json()["chunks"]
    assert [c["text"] for c in chunks] in ([versions[0]], [versions[1]])


def test_too_many_files_is_413_and_queues_none_of_them(
    api: ServerProcess, worker: ServerProcess
) -> None:
    files = {f"wren-{i}.txt": b"Wrens sing loudly for their size." for i in range(MAX_FILES + 1)}
    refused = upload(api, files)
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["type"] == "too_many_files"
    assert f"at most {MAX_FILES} files" in refused.json()["error"]["message"]
    # An upload of the limit is accepted; once it is indexed, none of the refused files is
    # (the queue is first in, first out: had they been queued, they would be done by now).
    allowed = {f"robin-{i}.txt": b"Robins hold winter territories." for i in range(MAX_FILES)}
    accepted = upload(api, allowed)
    assert accepted.status_code == 202, accepted.text
    assert wait_attempt(api, accepted.json()["attempt_id"])["status"] == "succeeded"
    for name in files:
        assert httpx.get(f"{api.url}/api/documents/{name}").status_code == 404


def test_a_hostile_corpus_fails_alone_through_the_real_worker(
    api: ServerProcess, worker: ServerProcess
) -> None:
    """Backtracking Markdown, zip and PDF bombs, deep and wide JSON, nested HTML, broken
    text: each ends (failed with a reason, or indexed) while the normal file of the same
    upload is indexed, and the worker stays small: the parsing happened in its sandbox."""
    from benchmarks.hostile_corpus import hostile_corpus

    # Less the wide JSON: cut at 10 M characters it is a legitimate document of some
    # 10,000 chunks, minutes of embedding here (its bound is tested in test_hostile_files).
    corpus = [f for f in hostile_corpus() if f.filename != "wide.json"]
    files = {f.filename: f.data for f in corpus} | {
        "normal.txt": b"Ospreys dive feet first for fish near the estuary."
    }
    started = time.monotonic()
    names = sorted(files, key=lambda n: n != "normal.txt")  # the normal file among the first
    attempts = []
    for at in range(0, len(names), 4):  # this module's API takes 4 files per upload
        accepted = upload(api, {n: files[n] for n in names[at : at + 4]})
        assert accepted.status_code == 202, accepted.text
        attempts.append(accepted.json()["attempt_id"])
    items = {
        i["filename"]: i
        for attempt_id in attempts
        for i in wait_attempt(api, attempt_id, timeout=300)["items"]
    }
    seconds = time.monotonic() - started
    assert items["normal.txt"]["status"] == "succeeded", items["normal.txt"]
    for hostile in corpus:
        item = items[hostile.filename]
        assert item["status"] in ("succeeded", "failed"), item
        if item["status"] == "failed":
            assert item["error"].startswith(f"{hostile.filename}: "), item
    assert seconds < 60 * len(files), seconds
    rss_kib = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    )
    assert rss_kib < 1024 * 1024, rss_kib  # under a GiB: no bomb was unpacked in the worker
    assert search(api, "ospreys estuary", mode="keyword")["results"][0]["path"] == "normal.txt"
