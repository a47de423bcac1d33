"""End to end on real parts: upload -> API -> Celery over Redis -> worker -> indexing server
-> PostgreSQL; query -> API -> inference server -> PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest

from tests.e2e_support import (
    search,
    top_document,
    upload,
    wait_attempt,
)
from tests.support import ServerProcess


def _docx(title: str, body: str) -> bytes:
    document = docx.Document()
    document.add_heading(title, level=1)
    document.add_paragraph(body)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


CORPUS: dict[str, bytes] = {
    "volcanoes.txt": (
        b"Volcanoes form where magma from the mantle reaches the surface. Basaltic lava "
        b"flows are runny, while andesitic eruptions are explosive and build steep cones."
    ),
    "sourdough.md": (
        b"# Sourdough baking\n\nFeed the starter with flour and water the night before. "
        b"A long cold fermentation in the fridge gives the bread its sour taste and open crumb."
    ),
    "chess.html": (
        b"<html><head><title>Chess openings</title><script>var x=1;</script></head><body>"
        b"<h1>Chess openings</h1><p>The Sicilian Defence answers 1.e4 with c5 and leads to "
        b"sharp, unbalanced positions favoured by aggressive players.</p></body></html>"
    ),
    "tides.docx": _docx(
        "Ocean tides",
        "Tides are caused by the gravitational pull of the moon and the sun on the oceans; "
        "spring tides happen at new and full moon.",
    ),
    "cycling.json": json.dumps(
        {
            "title": "Bicycle maintenance",
            "text": "Lubricate the chain every few hundred kilometres and check tyre pressure "
            "weekly; worn brake pads squeal and lengthen stopping distance.",
        }
    ).encode(),
}


@pytest.fixture(scope="module")
def indexed(api: ServerProcess, worker: ServerProcess) -> dict[str, Any]:
    response = upload(api, CORPUS)
    assert response.status_code == 202, response.text
    attempt = wait_attempt(api, response.json()["attempt_id"])
    assert attempt["status"] == "succeeded", attempt
    assert attempt["failed"] == 0
    return attempt


@pytest.mark.parametrize(
    ("query", "mode", "expected"),
    [
        ("andesitic eruptions", "keyword", "volcanoes.txt"),
        ("Sicilian Defence", "keyword", "chess.html"),
        ("molten rock coming out of a mountain", "semantic", "volcanoes.txt"),
        ("how do I make bread taste sour", "semantic", "sourdough.md"),
        ("why does the sea level rise and fall", "semantic", "tides.docx"),
        ("keeping my bike chain in good shape", "hybrid", "cycling.json"),
        ("lava flows", "hybrid", "volcanoes.txt"),
    ],
)
def test_search_finds_the_right_document(
    api: ServerProcess, indexed: dict[str, Any], query: str, mode: str, expected: str
) -> None:
    result = search(api, query, mode=mode, limit=3)
    assert result["mode"] == mode
    assert result["degraded"] is False
    assert top_document(result) == expected, result


def test_results_carry_title_source_and_marked_snippet(
    api: ServerProcess, indexed: dict[str, Any]
) -> None:
    hit = search(api, "Sicilian Defence", mode="hybrid")["results"][0]
    assert hit["title"] == "Chess openings"
    assert (hit["source"], hit["path"]) == ("upload", "chess.html")
    assert "<mark>Sicilian</mark>" in hit["snippet"]
    assert "var x" not in hit["snippet"]  # scripts never reach the index
    assert hit["score"] > 0


def test_document_listing_and_detail(api: ServerProcess, indexed: dict[str, Any]) -> None:
    page = httpx.get(f"{api.url}/api/documents", params={"limit": 2}).json()
    assert page["total"] == len(CORPUS)
    assert len(page["items"]) == 2
    rest = httpx.get(f"{api.url}/api/documents", params={"offset": 2, "limit": 10}).json()
    ids = {d["id"] for d in page["items"]} | {d["id"] for d in rest["items"]}
    assert ids == set(CORPUS)
    detail = httpx.get(f"{api.url}/api/documents/tides.docx").json()
    assert detail["title"] == "Ocean tides"
    assert detail["chunk_count"] == len(detail["chunks"]) >= 1
    assert "gravitational pull" in detail["chunks"][0]["text"]
    assert httpx.get(f"{api.url}/api/documents/missing.txt").status_code == 404


def test_reupload_replaces_and_delete_removes(api: ServerProcess, indexed: dict[str, Any]) -> None:
    first = upload(api, {"notes.txt": b"The quokka is a small marsupial from Rottnest Island."})
    wait_attempt(api, first.json()["attempt_id"])
    assert top_document(search(api, "quokka", mode="keyword")) == "notes.txt"
    second = upload(
        api, {"notes.txt": b"Narwhals have a long spiral tusk and live in arctic water."}
    )
    wait_attempt(api, second.json()["attempt_id"])
    assert search(api, "quokka", mode="keyword")["results"] == []
    assert top_document(search(api, "narwhal tusk", mode="keyword")) == "notes.txt"
    detail = httpx.get(f"{api.url}/api/documents/notes.txt").json()
    assert [c["ordinal"] for c in detail["chunks"]] == [0]

    assert httpx.delete(f"{api.url}/api/documents/notes.txt").status_code == 204
    assert search(api, "narwhal tusk", mode="keyword")["results"] == []
    assert httpx.get(f"{api.url}/api/documents/notes.txt").status_code == 404
    assert httpx.delete(f"{api.url}/api/documents/notes.txt").status_code == 404


def test_batch_json_documents(api: ServerProcess, indexed: dict[str, Any]) -> None:
    response = httpx.post(
        f"{api.url}/api/documents/batch",
        json={
            "documents": [
                {
                    "id": "kb-1",
                    "title": "Refund policy",
                    "text": "Customers may request a refund within thirty days of purchase.",
                    "metadata": {"team": "support"},
                }
            ]
        },
    )
    assert response.status_code == 202, response.text
    assert wait_attempt(api, response.json()["attempt_id"])["status"] == "succeeded"
    result = search(api, "money back", mode="semantic", filters={"metadata": {"team": "support"}})
    assert [h["document_id"] for h in result["results"]] == ["kb-1"]
    duplicate = httpx.post(
        f"{api.url}/api/documents/batch",
        json={"documents": [{"id": "x", "title": "t", "text": "a"}] * 2},
    )
    assert duplicate.status_code == 422


def test_bad_queries_are_422(api: ServerProcess) -> None:
    assert httpx.post(f"{api.url}/api/search", json={"query": ""}).status_code == 422
    assert httpx.post(f"{api.url}/api/search", json={"query": "   "}).status_code == 422
    long_query = httpx.post(f"{api.url}/api/search", json={"query": "word " * 400})
    assert long_query.status_code == 422
    assert long_query.json()["error"]["type"] == "query_too_long"
    bad_mode = httpx.post(f"{api.url}/api/search", json={"query": "x", "mode": "fuzzy"})
    assert bad_mode.status_code == 422


def test_cli_ingest_and_search(api: ServerProcess, indexed: dict[str, Any], tmp_path: Path) -> None:
    note = tmp_path / "okapi.md"
    note.write_text("# Okapi\n\nThe okapi is a forest giraffe from the Congo basin.")
    env = {"TANDEM_API_URL": api.url}
    ingest = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "ingest", str(note)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | env,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert "1 indexed, 0 failed" in ingest.stderr
    found = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "search", "forest giraffe"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | env,
    )
    assert found.returncode == 0, found.stderr
    assert "Okapi" in found.stderr


def test_stats_report_counts_and_both_model_servers(
    api: ServerProcess, worker: ServerProcess, indexed: dict[str, Any]
) -> None:
    deadline = time.monotonic() + 20
    while True:
        stats = httpx.get(f"{api.url}/api/stats").json()
        servers = stats["model_servers"]
        # The worker publishes every few seconds: wait for a report made after indexing.
        indexing = servers["indexing"]
        if servers["inference"] and indexing and (indexing["requests_total"] or 0) >= 1:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.5)
    assert stats["documents"] >= len(CORPUS)
    assert stats["chunks"] >= stats["documents"]
    assert stats["queue_length"] == 0
    assert servers["inference"]["ready"] is True
    assert servers["indexing"]["ready"] is True
    assert servers["inference"]["url"] != servers["indexing"]["url"]
    assert servers["indexing"]["requests_total"] >= 1  # the corpus was embedded there
