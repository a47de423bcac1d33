"""Uploading many files through the API: requests of bounded size, and the indexing
progress of all their index attempts together (for `tandem ingest`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tandem.api_schemas import AttemptOut, IngestResponse
from tandem.client import ApiRequestFailed, TandemClient

# Well under the API's default limits (1,000 files and 100 MiB per request), so a folder
# of thousands of files goes up in many small requests, each its own index attempt.
BATCH_FILES = 100
BATCH_BYTES = 32 * 1024 * 1024
FINISHED = ("succeeded", "failed")


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Every file named or under a named directory, sorted, each once."""
    return sorted(
        {
            p
            for path in paths
            for p in ([path] if path.is_file() else path.rglob("*"))
            if p.is_file()
        }
    )


def upload_batches(
    files: Iterable[Path], max_files: int = BATCH_FILES, max_bytes: int = BATCH_BYTES
) -> Iterator[list[Path]]:
    """Consecutive groups of at most `max_files` files and `max_bytes` bytes (a file larger
    than that goes alone: the API then judges it against its own limits)."""
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    batch: list[Path] = []
    size = 0
    for path in files:
        file_size = path.stat().st_size
        if batch and (len(batch) >= max_files or size + file_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += file_size
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class Sent:
    files: list[Path]
    accepted: IngestResponse | None  # None: the API refused this one file (`error`)
    error: str = ""


def send_batch(client: TandemClient, batch: list[Path]) -> Iterator[Sent]:
    """Upload `batch`; when the API answers 413 (too many bytes or files for its limits),
    upload each half instead, down to single files, which then fail on their own."""
    try:
        yield Sent(batch, client.upload(batch))
    except ApiRequestFailed as exc:
        if exc.status != 413:
            raise
        if len(batch) == 1:
            yield Sent(batch, None, f"{batch[0]}: refused by the API: {exc}")
            return
        half = len(batch) // 2
        yield from send_batch(client, batch[:half])
        yield from send_batch(client, batch[half:])


@dataclass
class AttemptTracker:
    """The index attempts of one ingest; finished attempts are not asked about again."""

    client: TandemClient
    attempts: dict[str, AttemptOut] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # files the API would not take

    def add(self, sent: Sent) -> None:
        if sent.accepted is None:
            self.refused.append(sent.error)
        else:
            self.sizes[sent.accepted.attempt_id] = len(sent.files)

    def poll(self) -> None:
        for attempt_id in self.sizes:
            known = self.attempts.get(attempt_id)
            if known is None or known.status not in FINISHED:
                self.attempts[attempt_id] = self.client.attempt(attempt_id)

    @property
    def done(self) -> int:
        return len(self.refused) + sum(a.done for a in self.attempts.values())

    @property
    def failed(self) -> int:
        return len(self.refused) + sum(a.failed for a in self.attempts.values())

    @property
    def finished(self) -> bool:
        return len(self.attempts) == len(self.sizes) and all(
            a.status in FINISHED for a in self.attempts.values()
        )

    def errors(self) -> list[str]:
        indexing = [i.error for a in self.attempts.values() for i in a.items if i.error]
        return self.refused + indexing
