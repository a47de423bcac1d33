"""Running the API server and workers as real processes for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tandem.db.session import normalize_url
from tests.held_worker import HOLD_AT
from tests.support import ServerProcess, free_port, spawn, wait_ready


@dataclass(frozen=True)
class Backends:
    database_url: str
    redis_url: str
    log_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            # A killed worker's task comes back after this many seconds.
            "TANDEM_TASK_VISIBILITY_TIMEOUT": "4",
        } | extra


def reset_database(database_url: str, redis_url: str) -> None:
    import redis

    engine = create_engine(normalize_url(database_url))
    with engine.begin() as connection:
        exists = connection.execute(text("SELECT to_regclass('documents')")).scalar()
        if exists is not None:
            connection.execute(
                text("TRUNCATE sources, documents, index_attempts, api_keys CASCADE")
            )
            connection.execute(text("INSERT INTO sources (name, kind) VALUES ('upload', 'upload')"))
    engine.dispose()
    redis.Redis.from_url(redis_url).flushdb()


def _spawn(
    argv: list[str], env: dict[str, str], log_path: Path, module: str = "tandem.cli"
) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", module, *argv], os.environ | env, log_path, append=True)


def start_api(
    backends: Backends,
    inference_url: str,
    *,
    open_access: bool = True,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    port = free_port()
    host, _, model_port = inference_url.removeprefix("http://").partition(":")
    argv = ["api", "--port", str(port)] + (["--open-access"] if open_access else [])
    log_path = backends.log_dir / f"api-{port}.log"
    process = _spawn(
        argv,
        backends.env(MODEL_SERVER_HOST=host, MODEL_SERVER_PORT=model_port, **(env or {})),
        log_path,
    )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(server)
    except AssertionError:
        server.stop()
        raise
    return server


def start_web(api_url: str | None, log_dir: Path) -> ServerProcess:
    """`tandem web` forwarding /api/ to `api_url` (None: no forwarding, as behind nginx)."""
    port = free_port()
    log_path = log_dir / f"web-{port}.log"
    process = _spawn(["web", "--port", str(port)], {"API_SERVER_URL": api_url or ""}, log_path)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(server, path="/healthz")
    except AssertionError:
        server.stop()
        raise
    return server


def create_api_key(backends: Backends, name: str = "tests") -> str:
    """A new key from `tandem api-key create`, as an operator makes one."""
    created = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "api-key", "create", "--name", name],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | backends.env(),
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def start_worker(
    backends: Backends,
    indexing_url: str,
    env: dict[str, str] | None = None,
    concurrency: int = 2,
) -> ServerProcess:
    host, _, port = indexing_url.removeprefix("http://").partition(":")
    log_path = backends.log_dir / f"worker-{time.monotonic_ns()}.log"
    settings = backends.env(INDEXING_MODEL_SERVER_HOST=host, INDEXING_MODEL_SERVER_PORT=port)
    env = settings | (env or {})
    if HOLD_AT in env:  # a worker with a fault injected: a test-only entry point
        process = _spawn(["--concurrency", str(concurrency)], env, log_path, "tests.held_worker")
    else:
        process = _spawn(["worker", "--concurrency", str(concurrency)], env, log_path)
    server = ServerProcess(process, indexing_url, log_path)
    deadline = time.monotonic() + 90
    while "ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"worker did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return server


@contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


def upload(
    api: ServerProcess, files: dict[str, bytes], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/documents",
        files=[("files", (name, data)) for name, data in files.items()],
        headers=headers or {},
        timeout=60,
    )


def wait_attempt(
    api: ServerProcess,
    attempt_id: str,
    timeout: float = 120.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(
            f"{api.url}/api/index-attempts/{attempt_id}", headers=headers or {}
        ).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"attempt {attempt_id} did not finish: {body}")


def search(api: ServerProcess, query: str, **options: object) -> dict[str, Any]:
    response = httpx.post(f"{api.url}/api/search", json={"query": query} | options, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def top_document(result: dict[str, Any]) -> str | None:
    hits = result["results"]
    assert isinstance(hits, list)
    return str(hits[0]["document_id"]) if hits else None
