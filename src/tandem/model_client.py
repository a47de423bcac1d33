"""HTTP client for a model server, speaking the shared wire schemas.

The API server holds one pointed at the inference server, each worker one pointed at
the indexing server; nothing else decides which server a component talks to.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import orjson

from tandem.config import ModelClientSettings
from tandem.model_files import FloatArray
from tandem.model_schemas import CrossEncoderRequest, EmbedRequest, TextType


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
        base_url: str,
        *,
        timeout: float,
        batch_size: int = 64,
        overload_wait: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        """`api_key`: the server's bearer key; None reads TANDEM_MODEL_SERVER_API_KEY (so
        every component sends the key its process was started with), "" sends none."""
        self.base_url = base_url
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
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: bytes) -> httpx.Response:
        deadline = time.monotonic() + self.overload_wait
        while True:
            try:
                response = self._send(path, body)
            except httpx.TransportError as exc:
                raise ModelServerUnavailable(f"{self.base_url}: {exc!r}") from exc
            # Wait out a 429 only when the wait ends inside the budget: a query with half
            # a second to spare answers from keywords now rather than a second late.
            pause = _retry_after(response) or 0.5
            if response.status_code == 429 and time.monotonic() + pause <= deadline:
                time.sleep(pause)
                continue
            if response.status_code == 401:
                raise ModelServerUnauthorized(
                    f"{self.base_url}{path}: 401 {_error_message(response)}; "
                    "check that TANDEM_MODEL_SERVER_API_KEY is the model server's"
                )
            if response.status_code in (429, 502, 503, 504):
                raise ModelServerUnavailable(
                    f"{self.base_url}{path}: {response.status_code} {_error_message(response)}",
                    _retry_after(response),
                )
            if response.status_code >= 400:
                raise ModelServerError(
                    f"{self.base_url}{path}: {response.status_code} {_error_message(response)}"
                )
            return response

    def _send(self, path: str, body: bytes) -> httpx.Response:
        headers = self._headers
        try:
            return self._http.post(path, content=body, headers=headers)
        except httpx.RemoteProtocolError:
            # A kept-alive connection closed by the server as we sent: embedding and
            # scoring are idempotent, so one fresh attempt is safe.
            return self._http.post(path, content=body, headers=headers)

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
