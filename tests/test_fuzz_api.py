"""The API server fuzzed from its OpenAPI document (with a real API key, PostgreSQL and
Redis): no 5xx, every status and body as documented. Then one regression test for each
server error fuzzing found."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e_support import Backends, create_api_key, running, start_api, start_worker
from tests.fuzz_support import assert_no_failures, fuzz
from tests.support import ServerProcess

pytestmark = pytest.mark.slow

# Indexed before fuzzing, so reads and deletes reach real documents, not only 404s:
# fuzzing reads the first, deletes the second.
KEPT = ["kept-tides", "kept-chess"]
DELETABLE = ["gone-one", "gone-two", "gone-three"]


@pytest.fixture(scope="module")
def api_key(backends: Backends) -> str:
    return create_api_key(backends, "fuzzing")


@pytest.fixture(scope="module")
def api(
    backends: Backends, inference_server: ServerProcess, api_key: str
) -> Iterator[ServerProcess]:
    with running(start_api(backends, inference_server.url, open_access=False)) as server:
        yield server


@pytest.fixture
def client(api: ServerProcess, api_key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def indexed_attempt(
    api: ServerProcess, api_key: str, backends: Backends, indexing_server: ServerProcess
) -> str:
    """Index a few documents through a real worker; the id of their index attempt."""
    documents = [
        {"id": doc_id, "title": doc_id, "text": f"{doc_id}: the moon raises tides twice a day."}
        for doc_id in KEPT + DELETABLE
    ]
    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        running(start_worker(backends, indexing_server.url)),
        httpx.Client(base_url=api.url, headers=headers, timeout=30) as http,
    ):
        response = http.post("/api/documents/batch", json={"documents": documents})
        assert response.status_code == 202, response.text
        attempt_id = str(response.json()["attempt_id"])
        deadline = time.monotonic() + 120
        while (status := http.get(f"/api/index-attempts/{attempt_id}").json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["status"] == "succeeded", status
    return attempt_id


def known_identifiers(attempt_id: str) -> str:
    """schemathesis configuration: half the path parameters are existing resources."""

    def values(ids: list[str]) -> str:
        return ", ".join(f'"{i}"' for i in ids)

    def binding(method: str, path: str, name: str, dictionary: str) -> str:
        drawn = f'{{ dictionary = "{dictionary}", probability = 0.5 }}'
        return (
            f'[[operations]]\ninclude-method = "{method}"\ninclude-path = "{path}"\n'
            f'parameters = {{ "path.{name}" = {drawn} }}\n'
        )

    # One parameter bound per operation entry: a second entry's binding is not applied,
    # so the attempt id, a name only one operation has, is bound for all.
    return (
        f"[dictionaries.kept]\nvalues = [{values(KEPT)}]\n"
        f"[dictionaries.deletable]\nvalues = [{values(DELETABLE)}]\n"
        f'[dictionaries.attempts]\nvalues = ["{attempt_id}"]\n'
        '[parameters]\n"path.attempt_id" = { dictionary = "attempts", probability = 0.5 }\n'
        + binding("GET", "/api/documents/{document_id}", "document_id", "kept")
        + binding("DELETE", "/api/documents/{document_id}", "document_id", "deletable")
    )


def test_fuzz_api_server(
    api: ServerProcess, api_key: str, indexed_attempt: str, tmp_path: Path
) -> None:
    result = fuzz(
        api.url,
        tmp_path,
        headers={"Authorization": f"Bearer {api_key}"},
        config=known_identifiers(indexed_attempt),
    )
    assert_no_failures(result)
    # Among them, the ones this suite must reach (the list grows with the API).
    assert {
        "POST /api/documents",
        "POST /api/documents/batch",
        "GET /api/documents",
        "GET /api/documents/{document_id}",
        "DELETE /api/documents/{document_id}",
        "GET /api/index-attempts/{attempt_id}",
        "POST /api/search",
    } <= set(result["documented"])
    # The known identifiers were used: reads and deletes reached real resources.
    for operation in (
        "GET /api/documents/{document_id}",
        "DELETE /api/documents/{document_id}",
        "GET /api/index-attempts/{attempt_id}",
    ):
        assert result["valid_rates"][operation]["fuzzing"]["accepted"] > 0, operation


def test_every_error_status_is_documented(api: ServerProcess) -> None:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    search = paths["/api/search"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422"} <= set(search)
    assert search["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert {"202", "400", "401", "413", "422"} <= set(
        paths["/api/documents/batch"]["post"]["responses"]
    )
    assert "404" in paths["/api/documents/{document_id}"]["delete"]["responses"]
    assert "503" in paths["/api/ready"]["get"]["responses"]


# --- regressions: each was a 500 ---------------------------------------------------


def post_raw(client: httpx.Client, path: str, body: str) -> httpx.Response:
    """Send JSON text as written: NUL and lone surrogate escapes reach the server as is."""
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


def assert_refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert field in error["message"], error["message"]
    return str(error["message"])


def test_offset_beyond_bigint_is_refused(client: httpx.Client) -> None:
    response = client.get("/api/documents", params={"offset": 10**35, "limit": 155})
    assert_refused(response, "offset")
    assert client.get("/api/documents", params={"offset": 2**31 - 1}).status_code == 200


def batch(document: str) -> str:
    return '{"documents": [' + document + "]}"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (r'{"id": "a", "title": "t", "text": "nul \u0000 here"}', "documents.0.text"),
        (r'{"id": "a", "title": "t\u0000", "text": "x"}', "documents.0.title"),
        (r'{"id": "\u0000", "title": "t", "text": "x"}', "documents.0.id"),
        (r'{"id": "a", "title": "t", "text": "x", "path": "s\u0000"}', "documents.0.path"),
        (r'{"id": "a", "title": "t", "text": "lone \ud800"}', "documents.0.text"),
        (r'{"id": "a", "title": "\udfff", "text": "x"}', "documents.0.title"),
        (r'{"id": "a", "title": "t", "text": "x", "metadata": {"k\u0000": 1}}', "metadata"),
        (r'{"id": "a", "title": "t", "text": "x", "metadata": {"k": "v\u0000"}}', "metadata.k"),
        (r'{"id": "a", "title": "t", "text": "x", "metadata": {"k": NaN}}', "metadata.k"),
        (r'{"id": "a", "title": "t", "text": "x", "metadata": {"k": Infinity}}', "metadata.k"),
    ],
)
def test_batch_text_that_postgres_cannot_hold_is_refused(
    client: httpx.Client, document: str, field: str
) -> None:
    assert_refused(post_raw(client, "/api/documents/batch", batch(document)), field)


def test_a_lone_surrogate_in_a_field_name_is_reported_not_a_500(client: httpx.Client) -> None:
    document = r'{"id": "a", "title": "t", "text": "x", "metadata": {"\ud800": "\u0000"}}'
    # The field name is quoted back, so it must be made encodable (not crash the response).
    message = assert_refused(
        post_raw(client, "/api/documents/batch", batch(document)), "documents.0.metadata."
    )
    assert "[key]" in message


def test_batch_of_clean_unusual_text_is_accepted(client: httpx.Client) -> None:
    # Control characters, a surrogate pair (one emoji) and big numbers are fine.
    document = (
        r'{"id": "ctl\u0001", "title": "wave \ud83c\udf0a", "text": "tab\tand\u0007bell",'
        r' "metadata": {"n": 1e300, "i": 123456789012345678901234567890}}'
    )
    response = post_raw(client, "/api/documents/batch", batch(document))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (r'{"content_types": ["text/plain", "\u0000"]}', "filters.content_types.1"),
        (r'{"document_ids": ["\ud942"]}', "filters.document_ids.0"),
        (r'{"sources": ["s\u0000"]}', "filters.sources.0"),
        (r'{"metadata": {"k": "\u0000"}}', "filters.metadata.k"),
        (r'{"metadata": {"\u0000": true}}', "filters.metadata"),
    ],
)
def test_search_filters_postgres_cannot_hold_are_refused(
    client: httpx.Client, filters: str, field: str
) -> None:
    body = f'{{"query": "8w", "mode": "keyword", "filters": {filters}}}'
    assert_refused(post_raw(client, "/api/search", body), field)


def test_search_query_with_nul_is_refused(client: httpx.Client) -> None:
    assert_refused(post_raw(client, "/api/search", r'{"query": "a\u0000b"}'), "query")


def test_search_flag_takes_a_json_boolean_only(client: httpx.Client) -> None:
    assert_refused(post_raw(client, "/api/search", '{"query": "a", "rerank": 0}'), "rerank")


def test_document_path_with_nul_is_not_found(client: httpx.Client) -> None:
    assert client.get("/api/documents/a%00b").status_code == 404
    assert client.delete("/api/documents/a%00b").status_code == 404


def test_uploaded_filename_with_nul_is_refused(client: httpx.Client) -> None:
    # Written by hand: HTTP clients escape a NUL in a filename, a hostile one need not.
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="files"; filename="a\x00.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
        b"hello\r\n"
        b"--b--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=b"}
    message = assert_refused(client.post("/api/documents", content=body, headers=headers), "files")
    assert "NUL" in message
