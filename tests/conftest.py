from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.config import ModelCacheSettings
from tandem.config_fields import DEFAULT_EMBEDDING_MODEL
from tandem.db.migrate import upgrade
from tandem.db.session import make_engine, make_session_factory
from tandem.model_files import ModelKind, ModelNotPrepared, Precision, locate_prepared
from tests.support import ServerProcess, model_server, service_dir

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

    from tests.e2e_support import Backends


# Fixtures that start (or stand for) real server processes: a test using one is `slow`,
# so `pytest -m "not slow"` is the quick in-process part of the suite.
SERVER_FIXTURES = frozenset(
    {"inference_server", "indexing_server", "postgres_url", "redis_url", "backends", "server_logs"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model cache `make test` prepared; prepared here if missing (offline either way)."""
    cache = ModelCacheSettings().model_cache
    try:
        # Servers run int8 by default; the golden tests read fp32: both must be there.
        for precision in Precision:
            locate_prepared(
                cache, DEFAULT_EMBEDDING_MODEL, ModelKind.BI_ENCODER, precision=precision
            )
    except ModelNotPrepared:
        from tandem.model_server.prepare import ensure_embedding_model

        ensure_embedding_model(cache, DEFAULT_EMBEDDING_MODEL)
    os.environ["TANDEM_MODEL_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def inference_server(model_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with model_server("inference", server_logs) as server:
        yield server


@pytest.fixture(scope="session")
def indexing_server(model_cache: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with model_server("indexing", server_logs) as server:
        yield server


@pytest.fixture
def pg_tmp_path() -> Iterator[Path]:
    """Like tmp_path, for a PostgreSQL data directory (see tests.support.service_dir)."""
    with service_dir("pg") as path:
        yield path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a real PostgreSQL + pgvector for this session (fsync off: throwaway)."""
    from tandem.local.services.postgres import THROWAWAY_SETTINGS, running_postgres
    from tests.support import free_port

    with (
        service_dir("session-pg") as scratch,
        running_postgres(scratch / "data", free_port(), THROWAWAY_SETTINGS) as url,
    ):
        yield url


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test PostgreSQL, migrated, with no documents or attempts (nor their
    chunks and postings): each test starts from an empty index."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE sources, documents, index_attempts CASCADE"))
        connection.execute(text("INSERT INTO sources (name, kind) VALUES ('upload', 'upload')"))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis (append-only file on) for this session."""
    from tandem.local.services.redis import running_redis
    from tests.support import free_port

    with running_redis(tmp_path_factory.mktemp("redis"), free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def backends(
    request: pytest.FixtureRequest,
    postgres_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Backends:
    """The session's PostgreSQL and Redis, emptied for this module's end-to-end tests."""
    from tests.e2e_support import Backends, reset_database

    reset_database(postgres_url, redis_url)
    log_dir = tmp_path_factory.mktemp(f"{request.module.__name__.rsplit('.', 1)[-1]}-logs")
    return Backends(postgres_url, redis_url, log_dir)


# The real stack's servers, one of each per test module (they start on its emptied
# `backends`). A module that needs another kind of API server (keys required, no
# inference server) or kills its servers defines its own.


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    """Extra settings for this module's API server: a module overrides it to set limits."""
    return {}


@pytest.fixture(scope="module")
def api(
    backends: Backends, inference_server: ServerProcess, api_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """`tandem api` with open access, searching through the session's inference server."""
    from tests.e2e_support import running, start_api

    with running(start_api(backends, inference_server.url, env=api_env)) as server:
        yield server


@pytest.fixture(scope="module")
def worker(backends: Backends, indexing_server: ServerProcess) -> Iterator[ServerProcess]:
    """`tandem worker` embedding through the session's indexing server."""
    from tests.e2e_support import running, start_worker

    with running(start_worker(backends, indexing_server.url)) as process:
        yield process


@pytest.fixture(scope="module")
def web(api: ServerProcess, backends: Backends) -> Iterator[ServerProcess]:
    """`tandem web` forwarding /api/ to this module's API server."""
    from tests.e2e_support import running, start_web

    with running(start_web(api.url, backends.log_dir)) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    """Headless Chromium for this module (modules check `require_chromium` first)."""
    from tests.browser import start_chromium

    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()
