"""The API server and the workers refuse to start on an index whose vector column does not
fit the embedding model, and say why."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tandem.db.migrate import upgrade
from tandem.db.session import make_engine
from tests.support import free_port, scratch_database

MESSAGE = "makes 384-dimensional vectors, but the index stores 768"


@pytest.fixture
def mismatched_database(postgres_url: str) -> Iterator[str]:
    """A database of its own whose chunks.embedding is vector(768), as if migrated for a
    bigger model."""
    with scratch_database(postgres_url, "dimension_check") as url:
        engine = make_engine(url)
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector(768)"))
        engine.dispose()
        yield url


def _run(argv: list[str], database_url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "tandem.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | env,
    )


def test_a_worker_refuses_an_index_of_another_vector_size(
    mismatched_database: str, redis_url: str, model_cache: Path
) -> None:
    finished = _run(["worker", "--concurrency", "1"], mismatched_database, redis_url)
    assert finished.returncode != 0
    assert MESSAGE in " ".join((finished.stdout + finished.stderr).split())


def test_the_api_refuses_an_index_of_another_vector_size(
    mismatched_database: str, redis_url: str, model_cache: Path
) -> None:
    finished = _run(
        ["api", "--open-access", "--port", str(free_port())], mismatched_database, redis_url
    )
    assert finished.returncode != 0
    assert MESSAGE in " ".join((finished.stdout + finished.stderr).split())
