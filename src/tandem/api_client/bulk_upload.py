"""Uploading many files through the API: requests of bounded size, and the indexing
progress of all their index attempts together (for `tandem ingest`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.sources.folder import FolderUnavailable, WalkProblem, walk_folder

if TYPE_CHECKING:
    # Types only: `tandem ingest --help` (BATCH_FILES) loads neither httpx nor the wire models.
    from tandem.api_client.client import TandemClient
    from tandem.wire.api import AttemptOut, IngestResponse

# Well under the API's default limits (1,000 files and 100 MiB per request), so a folder
# of thousands of files goes up in many small requests, each its own index attempt.
BATCH_FILES = 100
BATCH_BYTES = 32 * 1024 * 1024
FINISHED = ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class LocalFile:
    file: Path
    name: str  # the document's path: relative to the folder it was found in


class NameClash(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Collected:
    files: list[LocalFile]
    problems: list[str]  # what could not be read, with why


# The walk's per-file bound; the API judges each file against its own limit.
_WALK_MAX_BYTES = 1 << 40


def collect_files(paths: Iterable[Path]) -> Collected:
    """Every file named, or under a named directory as a folder source walks it (hidden
    and .gitignore'd files skipped, links followed without loops), each once. A file under
    a directory is named by its path relative to that directory; with several directories
    given, that path starts with its directory's name, so `docs/a/README.md` and
    `notes/a/README.md` stay two documents. Sorted by name."""
    given = list(paths)
    several = sum(p.is_dir() for p in given) > 1
    named: dict[str, Path] = {}
    problems: list[str] = []
    for path in given:
        found: list[tuple[str, Path]] = []
        if path.is_dir():
            prefix = f"{path.resolve().name}/" if several else ""
            try:
                for entry in walk_folder(path, max_file_bytes=_WALK_MAX_BYTES):
                    if isinstance(entry, WalkProblem):
                        problems.append(f"{path / entry.path}: {entry.reason}")
                    else:
                        found.append((prefix + entry.path, entry.absolute))
            except FolderUnavailable as exc:
                problems.append(str(exc))
        else:
            found.append((path.name, path))
        for name, file in found:
            other = named.setdefault(name, file)
            if other.resolve() != file.resolve():
                raise NameClash(
                    f"{other} and {file} would both be the document {name!r}; "
                    "give their folder instead"
                )
    return Collected([LocalFile(file, name) for name, file in sorted(named.items())], problems)


def upload_batches(
    files: Iterable[LocalFile], max_files: int = BATCH_FILES, max_bytes: int = BATCH_BYTES
) -> Iterator[list[LocalFile]]:
    """Consecutive groups of at most `max_files` files and `max_bytes` bytes (a file larger
    than that goes alone: the API then judges it against its own limits)."""
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    batch: list[LocalFile] = []
    size = 0
    for local in files:
        file_size = local.file.stat().st_size
        if batch and (len(batch) >= max_files or size + file_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(local)
        size += file_size
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class Sent:
    files: list[LocalFile]
    accepted: IngestResponse | None  # None: the API refused this one file (`error`)
    error: str = ""


def send_batch(client: TandemClient, batch: list[LocalFile]) -> Iterator[Sent]:
    """Upload `batch`; when the API answers 413 (too many bytes or files for its limits),
    upload each half instead, down to single files, which then fail on their own."""
    from tandem.api_client.client import ApiRequestFailed

    try:
        yield Sent(batch, client.upload((f.file, f.name) for f in batch))
    except ApiRequestFailed as exc:
        if exc.status != 413:
            raise
        if len(batch) == 1:
            yield Sent(batch, None, f"{batch[0].name}: refused by the API: {exc}")
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
