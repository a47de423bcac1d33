"""100 MiB request bodies the API must not accept: how soon each is refused, at what memory.

Starts PostgreSQL, Redis and two API servers on 127.0.0.1 (no model server: nothing here
gets that far): one requiring API keys, one with open access as `tandem up` runs it. To
each, for POST /api/documents (multipart), /api/documents/batch and /api/search (JSON),
it sends a body holding 100 MiB (the file, the text, `{},` items) and no key, over a raw
socket that keeps sending while it waits for the answer, once with Content-Length declared
and once chunked (no length). It records the status, the time from the first byte sent to
the status line, the bytes sent by then, and the API process's RSS (VmRSS from /proc,
sampled every 5 ms) before and at its peak. Writes results/unauthenticated_body.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import unwind_on_sigterm
from benchmarks.results_io import write_result
from benchmarks.tandem_stack import Process, backends, free_port, process, tandem_argv
from tandem.local.services.process import LOOPBACK as HOST

BODY_BYTES = 100 * 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = "tandem-benchmark-boundary"
ROUTES = {  # path -> (content type, opening bytes, repeated filler, closing bytes)
    "/api/documents": (
        f"multipart/form-data; boundary={BOUNDARY}",
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode(),
        b"x",
        f"\r\n--{BOUNDARY}--\r\n".encode(),
    ),
    "/api/documents/batch": (
        "application/json",
        b'{"documents": [{"id": "big", "title": "Big", "text": "',
        b"x",
        b'"}]}',
    ),
    # The shape that cost 1 GB of RSS before keys were checked ahead of the body.
    "/api/search": ("application/json", b"[", b"{},", b"{}]"),
}


def body_length(path: str, payload: int) -> int:
    _, opening, _, closing = ROUTES[path]
    return len(opening) + payload + len(closing)


def body(path: str, payload: int) -> Iterator[bytes]:
    """A well-formed body for `path` around `payload` bytes of filler (a file's content,
    a document's text, the search's `{},` items), in pieces of about CHUNK bytes."""
    _, opening, filler, closing = ROUTES[path]
    count, spare = divmod(payload, len(filler))
    yield opening + b" " * spare  # JSON whitespace (a 1-byte filler leaves none)
    per_block = CHUNK // len(filler)
    block = filler * per_block
    while count > 0:
        pieces = min(count, per_block)
        yield block if pieces == per_block else filler * pieces
        count -= pieces
    yield closing


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


class RssSampler:
    """The RSS of `pid` before a block and its highest sample (every 5 ms) during it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.2)  # what the refused request left behind, if anything, shows now
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.before


@dataclass(frozen=True)
class Refusal:
    status: int
    error_type: str
    seconds: float  # first byte sent -> status line received
    sent_bytes: int  # of the body, when the answer came


def _send(sock: socket.socket, chunks: Iterator[bytes], chunked: bool, sent: list[int]) -> None:
    try:
        for chunk in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent[0] += len(chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the answer came and the socket was shut: sending stops here


def _read_answer(sock: socket.socket) -> tuple[int, float, bytes]:
    data = b""
    status_at = 0.0
    while b"\r\n\r\n" not in data:
        received = sock.recv(65536)
        if not received:
            raise ConnectionError(f"closed without an answer after {data!r}")
        if not data:
            status_at = time.perf_counter()
        data += received
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(rest) < int(headers.get("content-length", "0")):
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), status_at, rest


def post_without_reading(
    url: str,
    path: str,
    *,
    payload: int = BODY_BYTES,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    send_body: bool = True,
) -> Refusal:
    """POST a body holding `payload` bytes to `url` + `path`, sending it while waiting
    for the answer, stopping at the answer. `send_body=False` sends the headers alone."""
    host, _, port = url.removeprefix("http://").partition(":")
    content_type = ROUTES[path][0]
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: {content_type}"]
    length = body_length(path, payload)
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sent = [0]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        sender = threading.Thread(
            target=_send, args=(sock, body(path, payload) if send_body else iter(()), chunked, sent)
        )
        sender.start()
        try:
            status, status_at, answer = _read_answer(sock)
            sent_by_then = sent[0]
        finally:
            sock.shutdown(socket.SHUT_RDWR)
            sender.join()
    error = json.loads(answer).get("error", {}) if answer.startswith(b"{") else {}
    return Refusal(status, str(error.get("type", "")), status_at - started, sent_by_then)


def measure(url: str, pid: int, path: str, **options: Any) -> dict[str, Any]:
    """`post_without_reading` to the server at `url` whose process is `pid`, with its RSS."""
    with RssSampler(pid) as rss:
        refusal = post_without_reading(url, path, **options)
    return asdict(refusal) | {
        "rss_before_mb": round(rss.before / 2**20, 1),
        "rss_peak_mb": round(rss.peak / 2**20, 1),
        "rss_growth_mb": round(rss.growth / 2**20, 1),
    }


@contextmanager
def api(log_dir: Path, env: dict[str, str], *, open_access: bool) -> Iterator[Process]:
    port = free_port()
    argv = tandem_argv("api", "--port", str(port), *(["--open-access"] if open_access else []))
    nowhere = {"MODEL_SERVER_HOST": HOST, "MODEL_SERVER_PORT": str(free_port())}
    name = "api-open" if open_access else "api-keyed"
    with process(name, argv, log_dir, env | nowhere, f"http://{HOST}:{port}") as server:
        server.wait_http_ready()
        yield server


def run(work: Path, payload: int = BODY_BYTES) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with backends(work, durable=False) as stores:
        for open_access in (False, True):
            mode = "open_access" if open_access else "keys_required"
            with api(work, stores.env(), open_access=open_access) as server:
                results[mode] = {
                    f"{path} {'chunked' if chunked else 'content-length'}": measure(
                        server.url, server.popen.pid, path, chunked=chunked, payload=payload
                    )
                    for path in ROUTES
                    for chunked in (False, True)
                }
    return results


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--payload-mib",
        type=float,
        default=BODY_BYTES / 2**20,
        help="MiB of payload per body (another size, e.g. to measure an older version "
        "under its 100 MiB overall limit)",
    )
    args = parser.parse_args()
    payload = int(args.payload_mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="tandem-bench-body-") as work:
        results = run(Path(work), payload)
    path = write_result(
        "unauthenticated_body", {"payload_bytes": payload, "results": results}, args.output
    )
    for mode, rows in results.items():
        for name, row in rows.items():
            print(
                f"{mode:14} {name:36} {row['status']} {row['error_type']:18} "
                f"{row['seconds'] * 1000:7.1f} ms  sent {row['sent_bytes'] / 2**20:6.1f} MiB  "
                f"RSS +{row['rss_growth_mb']} MB"
            )
    print(path)


if __name__ == "__main__":
    main()
