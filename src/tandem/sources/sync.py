"""One sync of a source: walk it, queue what changed, delete what is gone.

A sync holds its source's lease (`tandem.db.sources.claim_due`). It compares each path's
version (a file's size and mtime, a page's ETag and Last-Modified) with what the last
sync recorded, and reads only what differs; content whose hash is unchanged costs
nothing more. What changed becomes items of one index attempt, added in groups while the
walk goes on (workers start on the first group at once); the attempt is `collecting`
until the walk ends, and the sync is finished when its attempt is. Paths the last sync
saw and this one did not are deleted with their documents, but only after a complete
walk: a folder that is missing or unreadable, or a crawl cut short by its limits,
deletes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tandem.db import attempts
from tandem.db import sources as db
from tandem.db.models import SourceKind
from tandem.sources.folder import FolderUnavailable, WalkProblem, read_file, walk_folder
from tandem.sources.web import CrawlLimits, PreviousPage, SiteUnavailable, WebCrawler

log = logging.getLogger(__name__)

MAX_ERRORS_KEPT = 100
COUNTS = ("added", "updated", "unchanged", "deleted", "failed")


@dataclass(frozen=True, slots=True)
class SyncLimits:
    max_file_bytes: int
    items_per_group: int = 64  # items added to the attempt (and announced) at a time
    bytes_per_group: int = 16 << 20


@dataclass(frozen=True, slots=True)
class Found:
    """A path the walk reached. `body` is set when the walk read it already (a page);
    otherwise `read` gets (bytes, version after reading). `unchanged`: the walk knows
    it is as last seen (a 304)."""

    path: str
    version: str
    content_type: str | None = None
    body: bytes | None = None
    read: Callable[[], tuple[bytes, str]] | None = None
    links: tuple[str, ...] = ()
    unchanged: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Gone:
    path: str  # the source says it no longer exists (a 404 or 410)


class SourceUnavailable(RuntimeError):
    """The source as a whole cannot be walked: the sync fails and deletes nothing."""


class Walk:
    """What a source yields, and whether it reached everything it holds."""

    def __init__(self, found: Iterator[Found | Problem | Gone], complete: Callable[[], bool]):
        self.found = found
        self.complete = complete


def folder_walk(settings: dict[str, object], limits: SyncLimits) -> Walk:
    root = Path(str(settings["path"]))

    def found() -> Iterator[Found | Problem | Gone]:
        try:
            for entry in walk_folder(
                root,
                include=_strings(settings.get("include")),
                exclude=_strings(settings.get("exclude")),
                max_file_bytes=limits.max_file_bytes,
            ):
                if isinstance(entry, WalkProblem):
                    yield Problem(entry.path, entry.reason)
                    continue
                yield Found(
                    entry.path,
                    entry.version,
                    mimetypes.guess_type(entry.path)[0],
                    read=lambda f=entry: read_file(f, limits.max_file_bytes),  # type: ignore[misc]
                )
        except FolderUnavailable as exc:
            raise SourceUnavailable(str(exc)) from exc
        except ValueError as exc:  # an include or exclude pattern that is not a glob
            raise SourceUnavailable(f"invalid pattern: {exc}") from exc

    return Walk(found(), lambda: True)


def web_walk(
    settings: dict[str, object], previous: dict[str, db.Entry], limits: SyncLimits
) -> Walk:
    crawl_limits = CrawlLimits(
        max_pages=int(str(settings.get("max_pages", 1000))),
        max_depth=int(str(settings.get("max_depth", 10))),
        requests_per_second=float(str(settings.get("requests_per_second", 10.0))),
        max_bytes=limits.max_file_bytes,
    )
    crawler = WebCrawler(str(settings["url"]), crawl_limits)
    seen = {path: PreviousPage(e.version, e.links) for path, e in previous.items()}

    def found() -> Iterator[Found | Problem | Gone]:
        try:
            yield from pages()
        except SiteUnavailable as exc:
            raise SourceUnavailable(str(exc)) from exc

    def pages() -> Iterator[Found | Problem | Gone]:
        for page in crawler.crawl(seen):
            if page.status == "gone":
                yield Gone(page.url)
            elif page.status == "failed":
                yield Problem(page.url, page.error or "could not be fetched")
            else:
                yield Found(
                    page.url,
                    page.version,
                    page.content_type,
                    body=page.body,
                    links=tuple(page.links),
                    unchanged=page.status == "unchanged",
                )

    return Walk(found(), lambda: not crawler.truncated)


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass
class _Run:
    claimed: db.ClaimedSource
    sync_id: int
    attempt_id: uuid.UUID
    started_at: datetime
    counts: Counter[str] = field(default_factory=lambda: Counter({n: 0 for n in COUNTS}))
    errors: list[str] = field(default_factory=list)


@dataclass
class _Group:
    items: list[attempts.ItemToQueue] = field(default_factory=list)
    entries: dict[str, db.Entry] = field(default_factory=dict)
    size: int = 0


class Syncer:
    """Runs syncs of claimed sources; `announce(n)` tells workers n items are waiting."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        announce: Callable[[int], None],
        limits: SyncLimits,
    ) -> None:
        self._sessions = sessions
        self._announce = announce
        self._limits = limits

    def run(self, claimed: db.ClaimedSource) -> dict[str, int]:
        """One whole sync; its counts. The lease is given back however it ends."""
        with self._sessions.begin() as session:
            attempt, _ = attempts.create_attempt(session, [], collecting=True)
            sync = db.start_sync(session, claimed, attempt.id)
            previous = db.entries(session, claimed.name)
        run = _Run(claimed, sync.id, attempt.id, sync.started_at)
        log.info("sync_started source=%s sync=%d", claimed.name, run.sync_id)
        try:
            removed = self._compare(run, self._walk(claimed, previous), previous)
        except SourceUnavailable as exc:
            self._end(run, {}, str(exc))
        except BaseException as exc:
            self._end(run, {}, f"unexpected error: {type(exc).__name__}: {exc}")
            raise
        else:
            self._end(run, removed, None)
        return dict(run.counts)

    def _end(self, run: _Run, removed: dict[str, db.Entry], failure: str | None) -> None:
        run.counts["deleted"] = len(removed)
        with self._sessions.begin() as session:
            db.remove_paths(session, run.claimed.name, removed)
            db.record_walk(session, run.sync_id, dict(run.counts), run.errors[:MAX_ERRORS_KEPT])
            db.finish_walk(session, run.sync_id, failed=failure)
            attempts.stop_collecting(session, run.attempt_id)
            db.release(session, run.claimed, run.started_at)
        log.info(
            "sync_walked source=%s sync=%d %s%s",
            run.claimed.name,
            run.sync_id,
            " ".join(f"{k}={v}" for k, v in run.counts.items()),
            f" error={failure}" if failure else "",
        )

    def _walk(self, claimed: db.ClaimedSource, previous: dict[str, db.Entry]) -> Walk:
        if claimed.kind is SourceKind.FOLDER:
            return folder_walk(claimed.settings, self._limits)
        if claimed.kind is SourceKind.WEB:
            return web_walk(claimed.settings, previous, self._limits)
        raise SourceUnavailable(f"a source of kind {claimed.kind} is not synced")

    def _compare(self, run: _Run, walk: Walk, previous: dict[str, db.Entry]) -> dict[str, db.Entry]:
        """Queue what changed; the entries of paths that are gone."""
        seen: set[str] = set()
        gone: dict[str, db.Entry] = {}
        group = _Group()
        for found in walk.found:
            if found.path in seen:
                continue
            seen.add(found.path)
            if isinstance(found, Gone):
                if found.path in previous:
                    gone[found.path] = previous[found.path]
                continue
            if isinstance(found, Problem):
                run.counts["failed"] += 1
                run.errors.append(f"{found.path}: {found.reason}")
                if found.path.endswith("/"):  # a directory: what it holds is unknown, kept
                    seen |= {p for p in previous if p.startswith(found.path)}
                continue
            self._compare_one(run, found, previous.get(found.path), group)
            if len(group.items) >= self._limits.items_per_group or (
                group.size >= self._limits.bytes_per_group
            ):
                self._flush(run, group)
                group = _Group()
        self._flush(run, group)
        if walk.complete():
            gone |= {p: e for p, e in previous.items() if p not in seen}
        return gone

    def _compare_one(self, run: _Run, found: Found, before: db.Entry | None, group: _Group) -> None:
        source, counts = run.claimed.name, run.counts
        if before is not None and (
            found.unchanged or (found.version and found.version == before.version)
        ):
            counts["unchanged"] += 1
            if found.links != before.links and found.links:
                group.entries[found.path] = db.Entry(
                    before.version, before.content_hash, before.document_id, found.links
                )
            return
        if found.body is not None:
            data, version = found.body, found.version
        elif found.read is not None:
            data, version = found.read()
        else:
            return
        digest = hashlib.sha256(data).hexdigest()
        document_id = db.document_id(source, found.path)
        group.entries[found.path] = db.Entry(version, digest, document_id, found.links)
        if before is not None and before.content_hash == digest:
            counts["unchanged"] += 1  # touched, or served again without a validator
            return
        counts["added" if before is None else "updated"] += 1
        group.items.append(
            attempts.ItemToQueue(
                document_id=document_id,
                filename=found.path,
                payload=data,
                content_type=found.content_type,
                source=source,
                readers=run.claimed.readers,
                owner_id=run.claimed.owner_id,
            )
        )
        group.size += len(data)

    def _flush(self, run: _Run, group: _Group) -> None:
        """Store a group of items and entries together (an entry is saved only with its
        item, so a sync killed in between looks at that path again), then announce it."""
        with self._sessions.begin() as session:
            ids = attempts.add_items(session, run.attempt_id, group.items) if group.items else []
            db.save_entries(session, run.claimed.name, group.entries)
            db.record_walk(session, run.sync_id, dict(run.counts), run.errors[:MAX_ERRORS_KEPT])
        if ids:
            self._announce(len(ids))
