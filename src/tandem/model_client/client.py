"""HTTP client for a model server, speaking the shared wire schemas.

The API server holds one pointed at the inference servers, each worker one pointed at the
indexing servers; nothing else decides which servers a component talks to. Which of
several servers takes a request is `endpoints.EndpointPool`'s choice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import numpy as np
import orjson

from tandem.config import ModelClientSettings
from tandem.model_client.endpoints import Endpoint, EndpointPool, Resolver, resolve_addresses
from tandem.model_files import FloatArray
from tandem.wire.model import CrossEncoderRequest, EmbedRequest, TextType


class ModelServerError(RuntimeError):
    """The server answered with an error that retrying will not fix (a 4xx)."""


class ModelServerUnavailable(RuntimeError):
    """Down, not ready, overloaded or timed out: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelServerUnauthorized(ModelServerUnavailable):
    """401: this side's TANDEM_MODEL_SERVER_API_KEY is missing or differs from the
    server's. A deployment mistake, not the request's: work waits (documents are not
    failed) and searches degrade to keywords until the keys agree."""


class RerankNotAvailable(ModelServerError):
    pass


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


class ModelClient:
    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        timeout: float,
        batch_size: int = 64,
        overload_wait: float = 10.0,
        api_key: str | None = None,
        resolver: Resolver = resolve_addresses,
        resolve_seconds: float = 30.0,
    ) -> None:
        """`base_url`: one server's URL, or several entries (endpoints: URLs, or
        `dns+http://name:port` for every address of a name); requests are spread over them
        and one that fails is retried on another. `api_key`: the servers' bearer key; None
        reads TANDEM_MODEL_SERVER_API_KEY (so every component sends the key its process
        was started with), "" sends none."""
        entries = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_url = ",".join(entries)
        if api_key is None:
            api_key = ModelClientSettings().model_server_api_key
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self.batch_size = batch_size
        # 429s are short-lived by design: wait for them this long before giving up.
        self.overload_wait = overload_wait
        # Drop idle connections well before the server does (uvicorn: 5 s), or a request
        # can race the server's close and fail with "Server disconnected".
        self._http = httpx.Client(timeout=timeout, limits=httpx.Limits(keepalive_expiry=2.0))
        self.endpoints = EndpointPool(
            entries, probe=self._ready, resolver=resolver, resolve_seconds=resolve_seconds
        )

    def close(self) -> None:
        self.endpoints.close()
        self._http.close()

    def _ready(self, url: str) -> bool:
        try:
            return self._http.get(f"{url}/api/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _post(self, path: str, body: bytes) -> httpx.Response:
        deadline = time.monotonic() + self.overload_wait
        tried: list[Endpoint] = []  # this request's endpoints that failed or were full
        failure: ModelServerUnavailable | None = None
        overloaded: ModelServerUnavailable | None = None  # a 429 in this round
        while True:
            endpoint = self.endpoints.acquire(tried)
            if endpoint is None:
                pause = (overloaded.retry_after or 0.5) if overloaded is not None else 0.0
                if overloaded is not None and time.monotonic() + pause <= deadline:
                    # No server took it but one was only full: wait as it asked, go round.
                    # Only when the wait ends inside the budget: a query with half a
                    # second to spare answers from keywords now, not a second late.
                    time.sleep(pause)
                    tried.clear()
                    overloaded = None
                    continue
                raise (
                    overloaded
                    or failure
                    or ModelServerUnavailable(f"{self.base_url}: no server address")
                )
            url = endpoint.url
            try:
                response = self._send(f"{url}{path}", body)
            except httpx.TransportError as exc:
                self.endpoints.release(endpoint, repr(exc))
                failure = ModelServerUnavailable(f"{url}: {exc!r}")
                tried.append(endpoint)
                continue
            status = response.status_code
            if status in (502, 503, 504):
                self.endpoints.release(endpoint, str(status))
                failure = ModelServerUnavailable(
                    f"{url}{path}: {status} {_error_message(response)}", _retry_after(response)
                )
                tried.append(endpoint)
                continue
            # Anything else is an answer: the server is up, whatever it said.
            self.endpoints.release(endpoint)
            if status == 429:
                overloaded = ModelServerUnavailable(
                    f"{url}{path}: 429 {_error_message(response)}", _retry_after(response)
                )
                tried.append(endpoint)
                continue
            if status == 401:
                raise ModelServerUnauthorized(
                    f"{url}{path}: 401 {_error_message(response)}; "
                    "check that TANDEM_MODEL_SERVER_API_KEY is the model server's"
                )
            if status >= 400:
                raise ModelServerError(f"{url}{path}: {status} {_error_message(response)}")
            return response

    def _send(self, url: str, body: bytes) -> httpx.Response:
        headers = self._headers
        try:
            return self._http.post(url, content=body, headers=headers)
        except httpx.RemoteProtocolError:
            # A kept-alive connection closed by the server as we sent: embedding and
            # scoring are idempotent, so one fresh attempt is safe.
            return self._http.post(url, content=body, headers=headers)

    def embed(self, texts: list[str], text_type: TextType) -> FloatArray:
        """Normalized embeddings, requested in batches of ``batch_size``."""
        parts = []
        for start in range(0, len(texts), self.batch_size):
            request = EmbedRequest(
                texts=texts[start : start + self.batch_size],
                text_type=text_type,
                normalize_embeddings=True,
            )
            response = self._post("/encoder/bi-encoder-embed", request.model_dump_json().encode())
            parts.append(np.asarray(orjson.loads(response.content)["embeddings"], np.float32))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack(parts)

    def rerank(self, query: str, documents: list[str]) -> list[float]:
        body = CrossEncoderRequest(query=query, documents=documents).model_dump_json().encode()
        try:
            response = self._post("/encoder/cross-encoder-scores", body)
        except ModelServerError as exc:
            raise RerankNotAvailable(str(exc)) from exc
        return [float(s) for s in orjson.loads(response.content)["scores"]]
