"""A small client of the Tandem API, used by `tandem ingest` and `tandem search`."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel

from tandem.wire.api import (
    AttemptOut,
    IngestResponse,
    SearchRequest,
    SearchResponse,
    SourceIn,
    SourceList,
    SourceOut,
)

Answer = TypeVar("Answer", bound=BaseModel)


class ApiRequestFailed(RuntimeError):
    """The API answered with an error status; the message is its error envelope's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    raise ApiRequestFailed(response.status_code, message)


class TandemClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> TandemClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _request(
        self,
        method: str,
        url: str,
        answer: type[Answer],
        *,
        json: object = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    ) -> Answer:
        response = self._http.request(method, url, json=json, files=files)
        _raise_for(response)
        return answer.model_validate_json(response.content)

    def upload(self, files: Iterable[tuple[Path, str]]) -> IngestResponse:
        """Upload (file, its path as the document's) pairs."""
        parts = []
        for path, name in files:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            parts.append(("files", (name, path.read_bytes(), content_type)))
        return self._request("POST", "/api/documents", IngestResponse, files=parts)

    def attempt(self, attempt_id: str) -> AttemptOut:
        return self._request("GET", f"/api/index-attempts/{attempt_id}", AttemptOut)

    def add_source(self, source: SourceIn) -> SourceOut:
        body = source.model_dump(mode="json", exclude_none=True)
        return self._request("POST", "/api/sources", SourceOut, json=body)

    def sources(self) -> SourceList:
        return self._request("GET", "/api/sources", SourceList)

    def source(self, name: str) -> SourceOut:
        return self._request("GET", f"/api/sources/{name}", SourceOut)

    def sync_source(self, name: str) -> None:
        _raise_for(self._http.post(f"/api/sources/{name}/sync"))

    def remove_source(self, name: str) -> None:
        _raise_for(self._http.delete(f"/api/sources/{name}"))

    def search(self, request: SearchRequest) -> SearchResponse:
        body = request.model_dump(mode="json")
        return self._request("POST", "/api/search", SearchResponse, json=body)
