"""One GET for the crawler: paced, bounded in time and size, never following a redirect by
itself (the crawler decides which to follow), reading a body only when it is wanted."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


class FetchFailed(Exception):
    """The request got no usable answer; the message says why, for the source's owner."""


@dataclass
class RateLimit:
    """At least `interval` seconds between the starts of two requests."""

    interval: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    next_start: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.next_start is not None and now < self.next_start:
            self.sleep(self.next_start - now)
            now = self.next_start
        self.next_start = now + self.interval


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes | None  # read only for a 200 whose Content-Type was wanted

    @property
    def content_type(self) -> str | None:
        content_type: str | None = self.headers.get("content-type")
        return content_type


_OK = (200, 203)
_DRAIN_BYTES = 64 * 1024


@dataclass
class Fetcher:
    client: httpx.Client
    rate: RateLimit
    user_agent: str
    timeout_seconds: float

    def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        wants_body: Callable[[str | None], bool] = lambda _: True,
        max_bytes: int,
        cut_at_limit: bool = False,
    ) -> Reply:
        """Raises FetchFailed on a network error, a timeout, or a body over `max_bytes`
        (which `cut_at_limit` cuts to the limit instead)."""
        self.rate.wait()
        request_headers = {"User-Agent": self.user_agent, **(headers or {})}
        # httpx's timeout bounds each wait for the network; this bounds the whole request,
        # so a server that trickles a byte at a time cannot hold the crawl.
        deadline = time.monotonic() + self.timeout_seconds
        try:
            with self.client.stream(
                "GET",
                url,
                headers=request_headers,
                timeout=self.timeout_seconds,
                follow_redirects=False,
            ) as response:
                body = None
                if response.status_code in _OK and wants_body(response.headers.get("content-type")):
                    body = _read_body(response, max_bytes, cut_at_limit, deadline)
                elif response.status_code not in _OK:
                    _drain(response, deadline)
                return Reply(response.status_code, response.headers, body)
        except httpx.TimeoutException as exc:
            raise FetchFailed(f"timed out after {self.timeout_seconds:g} s") from exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"request failed: {exc or type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:
            raise FetchFailed(f"invalid URL: {exc}") from exc


def _drain(response: httpx.Response, deadline: float) -> None:
    """Reads a short error or redirect body, so the connection can serve the next request
    (one left unread is closed); a long one is left unread."""
    size = 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > _DRAIN_BYTES or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        return  # the answer is in hand: a body that breaks off changes nothing


def _read_body(response: httpx.Response, max_bytes: int, cut: bool, deadline: float) -> bytes:
    over_limit = FetchFailed(f"the body exceeds the {max_bytes}-byte limit")
    declared = response.headers.get("content-length", "")
    if not cut and declared.isdigit() and int(declared) > max_bytes:
        raise over_limit  # said so up front: nothing needs reading
    chunks: list[bytes] = []
    size = 0
    # iter_bytes undoes Content-Encoding, so the limit is on what is kept, not on the wire.
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            if cut:
                return b"".join(chunks)[:max_bytes]
            raise over_limit
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the body took too long", request=response.request)
    return b"".join(chunks)
