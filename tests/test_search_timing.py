"""Where a search's time goes, through the real API: a `Server-Timing` header whose stages
are the mode's own (keyword embeds nothing and walks no HNSW, semantic runs no BM25), whose
durations fit in the total along each thread, and the stage histograms at GET /metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tandem.wire.api import SearchResponse
from tests.e2e_support import upload, wait_attempt
from tests.support import ServerProcess

FILES = {
    "tides.txt": b"Tides are caused by the gravitational pull of the moon and the sun. "
    b"Spring tides happen at new and full moon.",
    "volcano.txt": b"A volcano erupts when magma rises through the crust. Lava flows "
    b"and ash clouds follow an eruption.",
    "bread.txt": b"Bread rises because yeast ferments sugar into carbon dioxide. "
    b"Knead the dough and let it proof.",
}
QUERY = "why do tides rise with the moon"
ALWAYS = {"connect", "fusion", "page", "snippets", "serialize", "total"}
# Along one thread stages never overlap. The query is embedded on a thread of its own
# while the index connects (and with hybrid, runs BM25 on a second connection), so those
# are separate lanes (tandem.index.stage_timings).
AFTER = ["fusion", "page", "snippets", "serialize"]
LANES = {
    "keyword": [["connect", "bm25", *AFTER]],
    "semantic": [["embed", "hnsw", *AFTER], ["connect", "hnsw", *AFTER]],
    "hybrid": [["embed", "hnsw", *AFTER], ["connect", "hnsw", *AFTER], ["bm25", "cosines", *AFTER]],
}
STAGES = {
    "keyword": ALWAYS | {"bm25"},
    "semantic": ALWAYS | {"embed", "hnsw"},
    "hybrid": ALWAYS | {"embed", "bm25", "hnsw", "cosines"},
}


@pytest.fixture(scope="module")
def indexed(api: ServerProcess, worker: ServerProcess) -> dict[str, Any]:
    response = upload(api, FILES)
    assert response.status_code == 202, response.text
    attempt = wait_attempt(api, response.json()["attempt_id"])
    assert attempt["status"] == "succeeded" and attempt["failed"] == 0, attempt
    return attempt


def server_timing(header: str) -> dict[str, float]:
    """{name: milliseconds} of a Server-Timing header, each name once."""
    stages: dict[str, float] = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        assert name not in stages, header
        stages[name] = float(duration)
    return stages


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_server_timing_names_the_modes_stages_within_the_total(
    api: ServerProcess, indexed: dict[str, Any], mode: str
) -> None:
    response = httpx.post(f"{api.url}/api/search", json={"query": QUERY, "mode": mode}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    # The route writes its body itself: it must still be the documented shape.
    assert SearchResponse.model_validate(body).model_dump(mode="json") == body
    assert body["mode"] == mode and not body["degraded"]
    assert body["results"][0]["document_id"] == "tides.txt"
    stages = server_timing(response.headers["server-timing"])
    assert set(stages) == STAGES[mode]
    assert all(ms >= 0 for ms in stages.values()), stages
    for lane in LANES[mode]:
        assert sum(stages[s] for s in lane) <= stages["total"], (lane, stages)
    # The body's own time is the search's: at most the route's total.
    assert body["took_ms"] <= stages["total"] + 0.01


def test_metrics_show_each_stage_by_mode(api: ServerProcess, indexed: dict[str, Any]) -> None:
    for mode in ("keyword", "hybrid"):
        response = httpx.post(
            f"{api.url}/api/search", json={"query": QUERY, "mode": mode}, timeout=30
        )
        assert response.status_code == 200, response.text
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['tandem_search_stage_seconds_count{mode="keyword",stage="bm25"}'] >= 1
    assert samples['tandem_search_stage_seconds_count{mode="hybrid",stage="hnsw"}'] >= 1
    assert samples['tandem_search_stage_seconds_count{mode="hybrid",stage="embed"}'] >= 1
    assert 'tandem_search_stage_seconds_count{mode="keyword",stage="embed"}' not in samples
    assert samples['tandem_search_seconds_count{mode="keyword"}'] >= 1
    assert samples['tandem_search_seconds_sum{mode="hybrid"}'] > 0
