"""The API and web servers as real processes, against requests they must refuse early:
huge bodies without a key, floods of made-up keys, foreign Host names, other origins'
writes, oversized or trickled headers. (The same rules in a real browser:
tests/test_cross_site_browser.py.)"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from benchmarks.unauthenticated_body import ROUTES, measure, post_without_reading
from sqlalchemy import create_engine, text

from tandem.db.session import normalize_url
from tests.e2e_support import Backends, create_api_key, running, start_api, start_web
from tests.support import ServerProcess, free_port

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
FAILURES_PER_MINUTE = 20


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"  # no model server: nothing here searches


@pytest.fixture(scope="module")
def locked_api(backends: Backends) -> Iterator[ServerProcess]:
    with running(start_api(backends, nowhere(), open_access=False)) as server:
        yield server


@pytest.fixture(scope="module")
def open_api(backends: Backends) -> Iterator[ServerProcess]:
    """Open access, as `tandem up` runs it."""
    with running(start_api(backends, nowhere())) as server:
        yield server


@pytest.fixture(scope="module")
def web(open_api: ServerProcess, backends: Backends) -> Iterator[ServerProcess]:
    with running(start_web(open_api.url, backends.log_dir)) as server:
        yield server


CASES = [
    *[("keys", path, chunked, 401) for path in ROUTES for chunked in (False, True)],
    *[("open", path, False, 413) for path in ROUTES],
    # Chunked, open access: refused once the route's limit is crossed (search 1 MiB, batch
    # 16 MiB). An open-access upload of 100 MiB chunked is within its limit until its end.
    ("open", "/api/search", True, 413),
    ("open", "/api/documents/batch", True, 413),
]


@pytest.mark.parametrize(
    ("mode", "path", "chunked", "status"),
    CASES,
    ids=[f"{m}-{p}-{'chunked' if c else 'length'}" for m, p, c, _ in CASES],
)
def test_a_100_mib_body_without_a_key_is_refused_at_once_in_little_memory(
    request: pytest.FixtureRequest, mode: str, path: str, chunked: bool, status: int
) -> None:
    api: ServerProcess = request.getfixturevalue("locked_api" if mode == "keys" else "open_api")
    result = measure(api.url, api.process.pid, path, chunked=chunked)
    assert result["status"] == status, result
    assert result["seconds"] < 1.0, result
    assert result["rss_growth_mb"] < 50, result
    assert result["sent_bytes"] < 100 * MIB  # answered before the client had sent it all


@pytest.mark.parametrize("path", list(ROUTES))
def test_the_key_is_checked_before_a_byte_of_the_body_is_read(
    locked_api: ServerProcess, open_api: ServerProcess, path: str
) -> None:
    """Headers alone (Content-Length: 100 MiB, no body sent): the answer comes anyway, so
    it cannot have waited for the body."""
    for headers in ({}, {"Authorization": "Bearer tdm_not-a-key"}):
        refused = post_without_reading(locked_api.url, path, headers=headers, send_body=False)
        assert (refused.status, refused.error_type) == (401, "unauthorized")
        assert refused.seconds < 1.0
    too_big = post_without_reading(open_api.url, path, send_body=False)
    assert (too_big.status, too_big.error_type) == (413, "payload_too_large")


def api_key_lookups(database_url: str) -> int:
    """Index and sequential scans of api_keys so far: one per key looked up. Read until
    it stops changing (a server's connections report their counts as they close)."""
    engine = create_engine(normalize_url(database_url))
    readings: list[int] = []
    try:
        while len(readings) < 3 or len(set(readings[-3:])) > 1:
            with engine.connect() as connection:
                readings.append(
                    int(
                        connection.execute(
                            text(
                                "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
                                "FROM pg_stat_user_tables WHERE relname = 'api_keys'"
                            )
                        ).scalar_one()
                    )
                )
            time.sleep(0.3)
    finally:
        engine.dispose()
    return readings[-1]


def test_made_up_keys_cost_few_database_queries_then_get_429(backends: Backends) -> None:
    env = {"TANDEM_KEY_FAILURES_PER_MINUTE": str(FAILURES_PER_MINUTE)}
    key = create_api_key(backends, "before-the-flood")
    before = api_key_lookups(backends.database_url)
    statuses: list[int] = []
    with running(start_api(backends, nowhere(), open_access=False, env=env)) as api:
        url = f"{api.url}/api/documents"
        with httpx.Client(timeout=10) as client:
            assert client.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
            for _ in range(10):  # one wrong key, retried: looked up once
                statuses.append(
                    client.get(url, headers={"Authorization": "Bearer tdm_x"}).status_code
                )
            for _ in range(300):  # a new random key each time
                guess = f"Bearer tdm_{secrets.token_urlsafe(32)}"
                response = client.get(url, headers={"Authorization": guess})
                statuses.append(response.status_code)
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["type"] == "too_many_failures"
            # The key checked before the flood is still accepted from the same address.
            assert client.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    lookups = api_key_lookups(backends.database_url) - before
    # The budget, plus what it refilled during the flood (a third of a failure a second).
    assert FAILURES_PER_MINUTE <= statuses.count(401) <= FAILURES_PER_MINUTE + 2, statuses
    assert set(statuses) == {401, 429}
    # The good key, the retried wrong one, and the random keys until the budget was spent.
    assert lookups <= 4 + FAILURES_PER_MINUTE, lookups


def test_foreign_host_names_get_400_on_both_servers(
    open_api: ServerProcess, web: ServerProcess
) -> None:
    for url, path in ((open_api.url, "/api/documents"), (web.url, "/"), (web.url, "/api/stats")):
        port = url.rsplit(":", 1)[1]
        for host in (f"rebind.example:{port}", "127.0.0.1.nip.example", "0.0.0.0"):
            refused = httpx.get(f"{url}{path}", headers={"Host": host})
            assert refused.status_code == 400, (url, host)
            assert refused.json()["error"]["type"] == "host_not_allowed"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert httpx.get(f"{url}{path}", headers={"Host": host}).status_code == 200


def document_ids(api: ServerProcess) -> list[str]:
    page = httpx.get(f"{api.url}/api/documents", params={"limit": 200}).json()
    return [item["id"] for item in page["items"]]


def test_writes_from_other_origins_get_403_on_both_servers(
    open_api: ServerProcess, web: ServerProcess
) -> None:
    files = [("files", ("planted.txt", b"Written by another web site."))]
    other_site = "http://127.0.0.1:5555"
    for base in (open_api.url, web.url):
        for headers in (
            {"Origin": other_site},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            refused = httpx.post(f"{base}/api/documents", files=files, headers=headers)
            assert refused.status_code == 403, (base, headers, refused.text)
            assert refused.json()["error"]["type"] == "cross_site_request"
        deleted = httpx.delete(f"{base}/api/documents/x", headers={"Origin": other_site})
        assert deleted.status_code == 403
    assert "planted.txt" not in document_ids(open_api)
    # The page's own origin, directly and through the web server's proxy, and clients that
    # send no Origin (the CLI) are served.
    own = [("own-api.txt", open_api.url, open_api.url), ("own-web.txt", web.url, web.url)]
    for name, base, origin in own:
        mine = [("files", (name, b"Written by the stack's own page."))]
        assert (
            httpx.post(f"{base}/api/documents", files=mine, headers={"Origin": origin}).status_code
            == 202
        )
    cli = [("files", ("cli.txt", b"Written by the command line."))]
    assert httpx.post(f"{open_api.url}/api/documents", files=cli).status_code == 202


def endless_header(port: int) -> bytes:
    """What the server answers a header that keeps growing (1 MiB sent); b"" if it reset
    the connection before its answer could be read (it closes at once after answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
            for _ in range(16):
                sock.sendall(b"p" * (64 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server before all of it was sent: its answer may be in
        try:
            return sock.recv(1024)
        except ConnectionResetError:
            return b""


def test_a_head_trickled_past_its_bound_gets_400_before_it_ends(
    open_api: ServerProcess,
) -> None:
    """Headers that arrive a kilobyte at a time are refused once the unfinished head
    passes 32 KiB, however long the client would go on (the parser itself has no bound)."""
    port = int(open_api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            for _ in range(256):  # 256 KiB if nobody stopped it
                sock.sendall(b"p" * 1024)
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: the answer is waiting to be read
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert answer.endswith(b"Request headers too large."), answer
    assert httpx.get(f"{open_api.url}/api/health").status_code == 200


def test_endless_headers_get_400_and_trickled_headers_are_cut_off(
    open_api: ServerProcess,
) -> None:
    port = int(open_api.url.rsplit(":", 1)[1])
    answer = endless_header(port)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer
    assert httpx.get(f"{open_api.url}/api/health").status_code == 200
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, without an answer
        assert 8.0 < time.monotonic() - started < 20.0
