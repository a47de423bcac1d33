"""The indexing pipeline on a real PostgreSQL and the real indexing model server: batches,
shared embedding requests, exactly-once chunks under takeover, and every failure ending
somewhere. Celery is not involved (tests/test_e2e_failures.py runs the worker process)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts
from tandem.documents.parsed import ParsedDocument
from tandem.model_client.client import ModelClient
from tandem.model_client.dimensions import IncompatibleModel, check_dimensions
from tandem.work_queue import claims
from tandem.worker.chunking import Chunker, TextChunk
from tandem.worker.held import HeldItems
from tandem.worker.pipeline import IndexingPipeline
from tandem.worker.stages import BatchTimings, Stage
from tests.held_worker import HoldAt
from tests.support import ServerProcess, free_port

DIMENSIONS = 384


@pytest.fixture
def sessions(empty_database: sessionmaker[Session]) -> sessionmaker[Session]:
    return empty_database


@pytest.fixture(scope="module")
def chunker(model_cache: Path) -> Chunker:
    return Chunker.from_model_dir(model_cache / "all-MiniLM-L6-v2")


def limits(owner: str = "test-worker", **overrides: float) -> claims.ClaimLimits:
    values: dict[str, float] = {
        "lease_seconds": 30.0,
        "max_items": 64,
        "max_bytes": 1 << 20,
        "max_failures": 3,
    }
    values.update(overrides)
    return claims.ClaimLimits(
        owner=owner,
        lease_seconds=values["lease_seconds"],
        max_items=int(values["max_items"]),
        max_bytes=int(values["max_bytes"]),
        max_failures=int(values["max_failures"]),
    )


def make_pipeline(
    sessions: sessionmaker[Session],
    url: str,
    chunker: Chunker,
    claim_limits: claims.ClaimLimits | None = None,
    **options: object,
) -> IndexingPipeline:
    return IndexingPipeline(
        sessions=sessions,
        embedder=ModelClient(url, timeout=60.0, batch_size=64, overload_wait=1.0),
        chunker=chunker,
        limits=claim_limits or limits(),
        dimensions=DIMENSIONS,
        retry_base_seconds=0.0,
        **options,  # type: ignore[arg-type]
    )


def upload(sessions: sessionmaker[Session], texts: dict[str, str]) -> uuid.UUID:
    items = [
        attempts.ItemToQueue(document_id=name, filename=name, payload=body.encode())
        for name, body in texts.items()
    ]
    with sessions.begin() as session:
        attempt, _ = attempts.create_attempt(session, items)
        return attempt.id


def short_texts(count: int, prefix: str = "note") -> dict[str, str]:
    return {
        f"{prefix}-{n:04d}.txt": f"Field note {n}: the heron at pond {n % 17} caught {n % 5} fish."
        for n in range(count)
    }


@dataclass
class ItemRow:
    document_id: str
    status: str
    error: str | None
    chunk_count: int
    claims: int
    failures: int


def item_rows(sessions: sessionmaker[Session]) -> dict[str, ItemRow]:
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT document_id, status, error, chunk_count, claims, failures "
                "FROM index_attempt_items ORDER BY id"
            )
        ).all()
    return {r[0]: ItemRow(*r) for r in rows}


def chunk_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(
            text("SELECT document_id, count(*) FROM chunks GROUP BY document_id")
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def attempt_status(sessions: sessionmaker[Session], attempt_id: uuid.UUID) -> str:
    with sessions() as session:
        return str(
            session.execute(
                text("SELECT status FROM index_attempts WHERE id = :id"), {"id": attempt_id}
            ).scalar_one()
        )


def expire_leases(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(
            text(
                "UPDATE index_attempt_items SET lease_expires_at = now() - interval '1 second' "
                "WHERE status = 'running'"
            )
        )


def test_short_documents_share_one_request_and_one_write(
    sessions: sessionmaker[Session], indexing_server: ServerProcess, chunker: Chunker
) -> None:
    attempt_id = upload(sessions, short_texts(50))
    pipeline = make_pipeline(sessions, indexing_server.url, chunker)
    timings = pipeline.run_batch("test")
    assert (timings.items, timings.passages, timings.indexed) == (50, 50, 50)
    assert len(timings.embed_intervals) == 1  # 50 passages: one request
    assert chunk_counts(sessions) == dict.fromkeys(short_texts(50), 1)
    assert attempt_status(sessions, attempt_id) == "succeeded"
    assert pipeline.run_batch("test").items == 0  # nothing left to claim


def test_requests_are_filled_across_documents(
    sessions: sessionmaker[Session], indexing_server: ServerProcess, chunker: Chunker
) -> None:
    paragraph = "The survey logged salinity, temperature and oxygen every hour at the mouth. "
    texts = {f"long-{n}.txt": f"Report {n}. " + paragraph * 200 for n in range(5)}
    expected = {
        name: len(chunker.chunk(ParsedDocument(name, body, name, "text/plain")))
        for name, body in texts.items()
    }
    upload(sessions, texts)
    timings = make_pipeline(sessions, indexing_server.url, chunker).run_batch("test")
    total = sum(expected.values())
    assert total > 64
    assert timings.passages == total
    assert len(timings.embed_intervals) == -(-total // 64)  # full requests of 64
    assert chunk_counts(sessions) == expected


def test_a_claim_takes_items_once_and_respects_its_limits(
    sessions: sessionmaker[Session],
) -> None:
    upload(sessions, short_texts(10))
    first = claims.claim_items(sessions, limits("a", max_items=4))
    second = claims.claim_items(sessions, limits("b", max_items=100, max_bytes=150))
    assert len(first) == 4
    assert 1 <= len(second) < 6  # the byte budget stops it (one item at least)
    assert not {i.id for i in first} & {i.id for i in second}
    assert sum(i.size_bytes for i in second[:-1]) <= 150


def test_a_taken_over_claim_writes_nothing_and_chunks_exist_once(
    sessions: sessionmaker[Session],
    indexing_server: ServerProcess,
    chunker: Chunker,
    tmp_path: Path,
) -> None:
    """A worker whose lease ran out (a long pause) finishes after another took over: the
    fence drops its write; the document has exactly one copy of its chunks."""
    attempt_id = upload(sessions, short_texts(3))
    hold = HoldAt(Stage.EMBEDDED, tmp_path / "hold")
    slow = make_pipeline(sessions, indexing_server.url, chunker, limits("slow"), observer=hold)
    results: list[BatchTimings] = []
    runner = threading.Thread(target=lambda: results.append(slow.run_batch("slow")))
    runner.start()
    try:
        assert hold.arrived.wait(60)
        expire_leases(sessions)
        fast = make_pipeline(sessions, indexing_server.url, chunker, limits("fast"))
        taken = [fast.run_batch("fast") for _ in range(3)]
        assert [t.indexed for t in taken] == [1, 1, 1]  # recovering items go one at a time
    finally:
        hold.release()
        runner.join(60)
    assert results[0].indexed == 0
    rows = item_rows(sessions)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert {r.claims for r in rows.values()} == {2}
    assert {r.failures for r in rows.values()} == {1}  # the lapsed lease counts
    assert chunk_counts(sessions) == dict.fromkeys(short_texts(3), 1)
    assert attempt_status(sessions, attempt_id) == "succeeded"


class ExplodingChunker(Chunker):
    """The real chunker, except that one document makes it raise (a bug in the worker)."""

    def __init__(self, chunker: Chunker, poison: str) -> None:
        self.__dict__.update(chunker.__dict__)
        self.poison = poison

    def chunk(self, doc: ParsedDocument) -> list[TextChunk]:
        if doc.path == self.poison:
            raise RuntimeError("chunker bug")
        return super().chunk(doc)


def test_an_unexpected_error_retries_then_fails_the_item_alone(
    sessions: sessionmaker[Session], indexing_server: ServerProcess, chunker: Chunker
) -> None:
    texts = short_texts(4)
    poison = next(iter(texts))
    attempt_id = upload(sessions, texts)
    pipeline = make_pipeline(
        sessions, indexing_server.url, ExplodingChunker(chunker, poison), limits(max_failures=2)
    )
    with pytest.raises(RuntimeError, match="chunker bug"):
        pipeline.run_batch("test")
    rows = item_rows(sessions)
    assert rows[poison].status == "queued"
    assert rows[poison].failures == 1
    assert "RuntimeError: chunker bug" in str(rows[poison].error)
    assert all(r.status == "queued" and r.failures == 0 for n, r in rows.items() if n != poison)
    # The poisoned item is claimed alone; its batch-mates are not blamed again.
    with pytest.raises(RuntimeError):
        pipeline.run_batch("test")
    assert pipeline.run_batch("test").indexed == 3
    # One more due claim finds it over the limit and gives it up with the last error.
    assert pipeline.run_batch("test").items == 0
    rows = item_rows(sessions)
    assert rows[poison].status == "failed"
    assert str(rows[poison].error).startswith("gave up after 2 failed attempts")
    assert "chunker bug" in str(rows[poison].error)
    assert attempt_status(sessions, attempt_id) == "succeeded"


def test_an_unreachable_server_releases_the_batch_to_wait(
    sessions: sessionmaker[Session], chunker: Chunker
) -> None:
    upload(sessions, short_texts(3))
    nowhere = f"http://127.0.0.1:{free_port()}"
    timings = make_pipeline(sessions, nowhere, chunker).run_batch("test")
    assert (timings.items, timings.indexed, timings.released) == (3, 0, 3)
    rows = item_rows(sessions).values()
    assert {r.status for r in rows} == {"queued"}
    assert all(str(r.error).startswith("waiting to retry") for r in rows)
    assert {r.failures for r in rows} == {0}
    assert claims.claimable_count(sessions, cap=10) == 0  # not due before the backoff


def test_vectors_of_another_size_fail_the_items_with_a_message(
    sessions: sessionmaker[Session], indexing_server: ServerProcess, chunker: Chunker
) -> None:
    attempt_id = upload(sessions, short_texts(2))
    pipeline = replace(make_pipeline(sessions, indexing_server.url, chunker), dimensions=768)
    assert pipeline.run_batch("test").failed == 2
    rows = item_rows(sessions).values()
    assert {r.status for r in rows} == {"failed"}
    assert all("the index stores 768 dimensions" in str(r.error) for r in rows)
    assert attempt_status(sessions, attempt_id) == "failed"
    assert chunk_counts(sessions) == {}


def test_start_up_refuses_a_model_of_another_size(sessions: sessionmaker[Session]) -> None:
    assert check_dimensions(sessions, "all-MiniLM-L6-v2", DIMENSIONS) == DIMENSIONS
    with pytest.raises(IncompatibleModel, match=r"makes 768-dimensional vectors.*vector\(384\)"):
        check_dimensions(sessions, "all-mpnet-base-v2", 768)


def test_held_inside_the_write_transaction_nothing_is_visible(
    sessions: sessionmaker[Session],
    indexing_server: ServerProcess,
    chunker: Chunker,
    tmp_path: Path,
) -> None:
    """The catalog rows, chunks and outcomes become visible together, at the commit (a
    worker killed before it leaves nothing: tests/test_e2e_failures.py)."""
    upload(sessions, short_texts(2))
    hold = HoldAt(Stage.WRITTEN, tmp_path / "hold")
    pipeline = make_pipeline(sessions, indexing_server.url, chunker, observer=hold)
    runner = threading.Thread(target=pipeline.run_batch, args=("test",))
    runner.start()
    try:
        assert hold.arrived.wait(60)
        assert (tmp_path / "hold").read_text().startswith("written ")
        assert chunk_counts(sessions) == {}
        assert {r.status for r in item_rows(sessions).values()} == {"running"}
    finally:
        hold.release()
        runner.join(60)
    assert chunk_counts(sessions) == dict.fromkeys(short_texts(2), 1)
    with sessions() as session:
        documents = session.execute(text("SELECT count(*) FROM documents")).scalar_one()
    assert documents == 2


def lease_seconds_left(sessions: sessionmaker[Session]) -> dict[int, float]:
    with sessions() as session:
        rows = session.execute(
            text(
                "SELECT id, extract(epoch FROM lease_expires_at - now()) "
                "FROM index_attempt_items WHERE status = 'running'"
            )
        ).all()
    return {int(r[0]): float(r[1]) for r in rows}


def test_the_heartbeat_extends_only_what_a_live_batch_holds(
    sessions: sessionmaker[Session],
) -> None:
    upload(sessions, short_texts(4))
    claimed = claims.claim_items(sessions, limits("me", lease_seconds=5))
    held = HeldItems(max_hold_seconds=3600)
    held.add([i.id for i in claimed[:2]])
    assert claims.extend_leases(sessions, "me", held.current(), 600) == 2
    assert claims.extend_leases(sessions, "someone-else", held.current(), 600) == 0
    left = lease_seconds_left(sessions)
    assert all(left[i.id] > 500 for i in claimed[:2])
    assert all(left[i.id] < 10 for i in claimed[2:])
    # A batch held past its limit is presumed stuck: its leases are left to run out.
    stuck = HeldItems(max_hold_seconds=-1.0)  # any claim is already past it
    stuck.add([claimed[0].id])
    assert stuck.current() == []
