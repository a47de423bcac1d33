"""POST /api/search on the real stack: one result per document by default (its best chunk,
with path and source), every chunk on request, pages by offset, and the filters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e_support import search, upload, wait_attempt
from tests.search_results_corpus import FILES, HANDBOOK, QUERY
from tests.support import ServerProcess

MODES = ["keyword", "semantic", "hybrid"]


@pytest.fixture(scope="module")
def indexed(api: ServerProcess, worker: ServerProcess) -> dict[str, Any]:
    response = upload(api, FILES)
    assert response.status_code == 202, response.text
    attempt = wait_attempt(api, response.json()["attempt_id"])
    assert attempt["status"] == "succeeded" and attempt["failed"] == 0, attempt
    handbook = next(i for i in attempt["items"] if i["document_id"] == HANDBOOK)
    assert handbook["chunk_count"] >= 8, handbook  # long enough to fill a page alone
    return attempt


def documents(result: dict[str, Any]) -> list[str]:
    return [hit["document_id"] for hit in result["results"]]


@pytest.mark.parametrize("mode", MODES)
def test_one_result_per_document_with_its_path_and_source(
    api: ServerProcess, indexed: dict[str, Any], mode: str
) -> None:
    grouped = search(api, QUERY, mode=mode, limit=10)
    assert grouped["grouped"] is True and grouped["offset"] == 0
    found = documents(grouped)
    assert len(found) == len(set(found)) == 10
    hits = {hit["document_id"]: hit for hit in grouped["results"]}
    assert {hit["source"] for hit in hits.values()} == {"upload"}
    assert all(hit["path"] == hit["document_id"] for hit in hits.values())  # upload: id = path
    chunks = search(api, QUERY, mode=mode, limit=100, group_by_document=False)
    assert chunks["grouped"] is False
    assert documents(chunks).count(HANDBOOK) >= 8
    # Each document at its best chunk: the first of its chunks in the chunk ranking.
    best: dict[str, int] = {}
    for hit in chunks["results"]:
        best.setdefault(hit["document_id"], hit["chunk"])
    assert list(best)[:10] == found
    assert {d: hits[d]["chunk"] for d in found} == {d: best[d] for d in found}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("grouped", [True, False], ids=["documents", "chunks"])
def test_pages_by_offset_follow_on(
    api: ServerProcess, indexed: dict[str, Any], mode: str, grouped: bool
) -> None:
    options = {"mode": mode, "group_by_document": grouped}
    whole = search(api, QUERY, limit=100, **options)
    assert whole["next_offset"] is None  # every match on one page
    keys = [(h["document_id"], h["chunk"]) for h in whole["results"]]
    assert len(keys) >= 16
    paged: list[tuple[str, int]] = []
    offset: int | None = 0
    while offset is not None:
        page = search(api, QUERY, limit=6, offset=offset, **options)
        assert page["offset"] == offset
        paged += [(h["document_id"], h["chunk"]) for h in page["results"]]
        offset = page["next_offset"]
        assert offset is None or offset == page["offset"] + 6
    assert paged == keys  # no overlap, no gap, and the last page says so
    assert search(api, QUERY, limit=6, offset=len(keys), **options)["results"] == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"path_prefix": "guides/"}, {"guides/birds/heron.txt", "guides/birds/egret.md"}),
        ({"path_prefix": "guides/birds/eg"}, {"guides/birds/egret.md"}),
        ({"path_prefix": "notes/%"}, set()),  # taken literally
        ({"content_types": ["text/markdown"]}, {"guides/birds/egret.md"}),
        ({"updated_since": "2999-01-01T00:00:00Z"}, set()),
        ({"sources": ["elsewhere"]}, set()),
        (
            {"path_prefix": "notes/", "content_types": ["text/markdown"], "sources": ["upload"]},
            set(),
        ),
    ],
)
def test_filters_narrow_the_results(
    api: ServerProcess,
    indexed: dict[str, Any],
    mode: str,
    filters: dict[str, object],
    expected: set[str],
) -> None:
    assert set(documents(search(api, QUERY, mode=mode, limit=50, filters=filters))) == expected


@pytest.mark.parametrize(
    "since", ["2000-01-01T00:00:00Z", "2000-01-01T00:00:00+05:00", "2000-01-01T00:00:00"]
)
def test_updated_since_in_the_past_keeps_everything(
    api: ServerProcess, indexed: dict[str, Any], since: str
) -> None:
    everything = search(api, QUERY, mode="keyword", limit=50)
    recent = search(api, QUERY, mode="keyword", limit=50, filters={"updated_since": since})
    assert documents(recent) == documents(everything) and len(documents(everything)) == 16


@pytest.mark.parametrize(
    "body",
    [
        {"offset": 1001},
        {"offset": -1},
        {"offset": "10"},
        {"group_by_document": "no"},
        {"filters": {"updated_since": "last week"}},
        {"filters": {"updated_since": "2024-05-01"}},  # a date and time, not a day
        {"filters": {"updated_since": 1714521600}},  # nor seconds since 1970
        {"filters": {"updated_since": "1714521600"}},
        {"filters": {"path_prefix": "x" * 2001}},
        {"filters": {"path_prefix": "a\u0000b"}},
    ],
)
def test_bad_paging_and_filters_are_422(api: ServerProcess, body: dict[str, object]) -> None:
    response = httpx.post(f"{api.url}/api/search", json={"query": "heron"} | body, timeout=30)
    assert response.status_code == 422, response.text
