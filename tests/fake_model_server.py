"""A stand-in model server on 127.0.0.1 for tests about how callers handle its answers: it
refuses the first N POSTs with 429 + Retry-After (or all of them), and forwards everything
else to a real model server, each POST after an optional delay (a server slower than this
machine's, whatever the hardware). Only the overload and the pace are fake; the embeddings
are real."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

OVERLOADED = json.dumps({"error": {"message": "queue is full", "type": "overloaded"}}).encode()


class OverloadedModelServer:
    def __init__(
        self,
        upstream: str | None,
        refuse: int | None,
        retry_after: int = 1,
        post_delay: float = 0.0,
    ) -> None:
        """`refuse`: how many POSTs get 429 (None: every one); `upstream`: where the rest go
        (None: nowhere, they get 503); `post_delay`: seconds each passed-on POST waits."""
        self.upstream = upstream
        self.post_delay = post_delay
        self.refuse = refuse
        self.retry_after = retry_after
        self.refused: Counter[str] = Counter()  # path -> POSTs answered 429
        self.forwarded: Counter[str] = Counter()  # path -> requests passed on
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _should_refuse(self, path: str) -> bool:
        with self._lock:
            if self.refuse is None or sum(self.refused.values()) < self.refuse:
                self.refused[path] += 1
                return True
            return False

    def _forward(self, method: str, path: str, body: bytes, content_type: str) -> httpx.Response:
        assert self.upstream is not None
        with self._lock:
            self.forwarded[path] += 1
        headers = {"content-type": content_type} if content_type else {}
        return self._http.request(method, f"{self.upstream}{path}", content=body, headers=headers)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # the test asserts on the counters instead

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _pass_on(self, method: str, body: bytes) -> None:
                if fake.upstream is None:
                    self._answer(503, b"{}", {"Content-Type": "application/json"})
                    return
                content_type = self.headers.get("content-type", "")
                response = fake._forward(method, self.path, body, content_type)
                kept = {k: v for k, v in response.headers.items() if k.lower() in ("content-type",)}
                self._answer(response.status_code, response.content, kept)

            def do_GET(self) -> None:
                self._pass_on("GET", b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if fake._should_refuse(self.path):
                    headers = {
                        "Content-Type": "application/json",
                        "Retry-After": str(fake.retry_after),
                    }
                    self._answer(429, OVERLOADED, headers)
                    return
                time.sleep(fake.post_delay)
                self._pass_on("POST", body)

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@contextmanager
def overloaded_model_server(
    upstream: str | None, refuse: int | None, retry_after: int = 1, post_delay: float = 0.0
) -> Iterator[OverloadedModelServer]:
    server = OverloadedModelServer(upstream, refuse, retry_after, post_delay)
    server.start()
    try:
        yield server
    finally:
        server.stop()
