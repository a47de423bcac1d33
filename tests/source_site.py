"""A small web site on 127.0.0.1 for the crawler's tests: a dict of resources by path,
answering conditional GETs from their ETag and Last-Modified, recording every request."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Resource:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    chunked: bool = False  # no Content-Length: the size shows only while reading


def html(
    *, title: str = "", links: tuple[str, ...] = (), head: str = "", rel: str = ""
) -> Resource:
    """A page with a link to each of `links` (all with `rel` when given)."""
    attribute = f' rel="{rel}"' if rel else ""
    anchors = "".join(f'<a href="{link}"{attribute}>{link}</a>\n' for link in links)
    body = f"<html><head><title>{title}</title>{head}</head><body>{anchors}</body></html>"
    return Resource(body.encode())


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names lower-cased
    status: int
    body_bytes: int  # what the answer's body was (0 for a 304 or a redirect)


@dataclass
class Site:
    base_url: str = ""
    resources: dict[str, Resource] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        self.resources[path] = Resource(status=status, headers={"Location": to})

    def requested(self, path: str) -> list[Request]:
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def paths(self) -> list[str]:
        with self.lock:
            return [request.path for request in self.requests]

    def forget_requests(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_GET(self) -> None:
            resource = site.resources.get(self.path) or Resource(b"not found", status=404)
            if resource.delay_seconds:
                site.stopping.wait(resource.delay_seconds)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, body = resource.status, resource.body
            if status == 200 and _not_modified(resource, headers):
                status, body = 304, b""
            with site.lock:  # before answering: the crawler may be done once it has the answer
                site.requests.append(Request(self.path, headers, status, len(body)))
            self.send_response(status)
            self.send_header("Content-Type", resource.content_type)
            for name, value in (("ETag", resource.etag), ("Last-Modified", resource.last_modified)):
                if value is not None:
                    self.send_header(name, value)
            for name, value in resource.headers.items():
                self.send_header(name, value)
            if resource.chunked and body:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self._write(body, resource.chunked)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the crawler stopped reading: as it may

        def _write(self, body: bytes, chunked: bool) -> None:
            step = 64 * 1024
            for start in range(0, len(body), step):
                part = body[start : start + step]
                self.wfile.write(
                    f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part
                )
            if chunked and body:
                self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: object) -> None:
            pass  # the requests are recorded; stderr stays quiet

    return Handler


def _not_modified(resource: Resource, headers: dict[str, str]) -> bool:
    if resource.etag is not None and "if-none-match" in headers:
        return headers["if-none-match"] == resource.etag
    if resource.last_modified is not None and "if-modified-since" in headers:
        return headers["if-modified-since"] == resource.last_modified
    return False


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A crawler that stops reading (an image, a body over its limit, a timeout) resets
        # the connection: expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def running_site() -> Iterator[Site]:
    site = Site()
    server = _Server(("127.0.0.1", 0), _handler(site))
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-site", daemon=True
    )
    thread.start()
    try:
        yield site
    finally:
        site.stopping.set()  # a slow answer in progress ends now
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
