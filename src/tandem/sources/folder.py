"""A folder on this host as a document source: which files it holds, each with a version
(size and modification time) a sync compares with the last one, and reading one file.

What the walk takes: regular files below the root, directory by directory in code-point
order of the names, except hidden names (a leading "."; so `.git` is never entered), paths
a `.gitignore` at any level ignores (as git reads them), and paths the source's include and
exclude globs leave out. Symbolic links to files and directories are followed, inside the
root or out of it, but a directory or a file (hard links too) is taken once only: what is
reachable without a link is walked first, links after it (in the order they were met), so
a file reachable both ways keeps its own path and a link to an enclosing directory ends at
once. A name that is not UTF-8 is a problem: its path could not be stored as text.

What the caller can rely on: a path the walk yields neither as a file nor as a problem is
not part of the source (any longer): its document can go. A WalkProblem's path (ending
with "/" for a directory, whose whole subtree is then unknown) is one the walk could not
look at: keep what the last sync recorded for it."""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tandem.sources.folder_read import NotARegularFile, file_version, read_file
from tandem.sources.folder_rules import (
    GITIGNORE,
    IgnoreFile,
    Selection,
    UnreadableGitignore,
    is_ignored,
    read_gitignore,
)

__all__ = [
    "FolderFile",
    "FolderUnavailable",
    "NotARegularFile",
    "WalkProblem",
    "read_file",
    "walk_folder",
]


class FolderUnavailable(OSError):
    """The root itself is missing, not a directory or cannot be listed: the walk says
    nothing about the files, so none of them may be taken as deleted."""


@dataclass(frozen=True)
class FolderFile:
    path: str  # POSIX path relative to the root, e.g. "beta/README.md"
    absolute: Path
    size: int
    mtime_ns: int

    @property
    def version(self) -> str:
        return file_version(self.size, self.mtime_ns)


@dataclass(frozen=True)
class WalkProblem:
    path: str  # relative to the root; a directory's ends with "/"
    reason: str


WalkResult = FolderFile | WalkProblem


def walk_folder(
    root: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_file_bytes: int,
) -> Iterator[WalkResult]:
    """The files below `root`, and the places that could not be read (see the module).

    Raises FolderUnavailable here, before iterating, when the root cannot be listed, and
    ValueError for a malformed glob in `include` or `exclude`."""
    root = root.absolute()
    try:
        root_status = os.stat(root)
    except OSError as exc:
        raise FolderUnavailable(f"{root}: {exc.strerror}") from exc
    if not stat.S_ISDIR(root_status.st_mode):
        raise FolderUnavailable(f"{root}: not a directory")
    try:
        top, entries = _open_directory("", root, ())
    except OSError as exc:  # UnreadableGitignore too: what the root hides is unknown
        raise FolderUnavailable(f"{root}: cannot be listed ({_reason(exc)})") from exc
    selection = Selection.of(include, exclude)
    walk = _Walk(selection, max_file_bytes)
    walk.seen_directories.add((root_status.st_dev, root_status.st_ino))
    return walk.run(top, entries)


@dataclass(frozen=True)
class _Directory:
    path: str  # relative to the root, "" for the root
    absolute: Path
    ignore_files: tuple[IgnoreFile, ...]

    def child(self, name: str) -> tuple[str, Path]:
        return (f"{self.path}/{name}" if self.path else name), self.absolute / name


_Opened = tuple[_Directory, list[os.DirEntry[str]]]


@dataclass
class _Walk:
    selection: Selection
    max_file_bytes: int
    # (st_dev, st_ino) of what was taken: links never walk a directory or yield a file twice.
    seen_directories: set[tuple[int, int]] = field(default_factory=set)
    seen_files: set[tuple[int, int]] = field(default_factory=set)
    links: deque[tuple[_Directory, str]] = field(default_factory=deque)

    def run(self, root: _Directory, entries: list[os.DirEntry[str]]) -> Iterator[WalkResult]:
        yield from self._tree(root, entries)
        while self.links:
            directory, name = self.links.popleft()
            yield from self._link(directory, name)

    def _tree(self, top: _Directory, entries: list[os.DirEntry[str]]) -> Iterator[WalkResult]:
        # An explicit stack, not recursion: a deep tree must not hit the recursion limit.
        stack = [(top, iter(entries))]
        while stack:
            directory, pending = stack[-1]
            entry = next(pending, None)
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith("."):
                continue
            if _is_symlink(entry):
                self.links.append((directory, entry.name))
                continue
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing: gone
            except OSError as exc:
                yield WalkProblem(directory.child(entry.name)[0], _reason(exc))
                continue
            opened = yield from self._take(directory, entry.name, status)
            if opened is not None:
                subdirectory, subentries = opened
                stack.append((subdirectory, iter(subentries)))

    def _link(self, directory: _Directory, name: str) -> Iterator[WalkResult]:
        path, absolute = directory.child(name)
        try:
            status = os.stat(absolute)
        except FileNotFoundError:
            yield WalkProblem(path, "broken symbolic link")
            return
        except OSError as exc:
            yield WalkProblem(path, _reason(exc))
            return
        opened = yield from self._take(directory, name, status)
        if opened is not None:
            yield from self._tree(*opened)

    def _take(
        self, directory: _Directory, name: str, status: os.stat_result
    ) -> Generator[WalkResult, None, _Opened | None]:
        """Yields the file or problem at this entry; returns a directory to walk, if any."""
        path, absolute = directory.child(name)
        identity = (status.st_dev, status.st_ino)
        if stat.S_ISDIR(status.st_mode):
            if (
                is_ignored(f"{path}/", directory.ignore_files)
                or not self.selection.enters_directory(path)
                or identity in self.seen_directories
            ):
                return None
            self.seen_directories.add(identity)
            if not _is_utf8(name):
                yield _bad_name(f"{path}/")
                return None
            try:
                return _open_directory(path, absolute, directory.ignore_files)
            except FileNotFoundError:
                return None  # removed since the listing: gone
            except UnreadableGitignore as exc:
                yield WalkProblem(f"{path}/", str(exc))
                return None
            except OSError as exc:
                yield WalkProblem(f"{path}/", f"cannot be listed: {_reason(exc)}")
                return None
        # Fifos, sockets and devices are not documents (and opening a fifo would block).
        if (
            not stat.S_ISREG(status.st_mode)
            or is_ignored(path, directory.ignore_files)
            or not self.selection.takes_file(path)
            or identity in self.seen_files
        ):
            return None
        self.seen_files.add(identity)
        if not _is_utf8(name):
            yield _bad_name(path)
        elif status.st_size > self.max_file_bytes:
            yield WalkProblem(
                path, f"{status.st_size} bytes exceeds the {self.max_file_bytes}-byte limit"
            )
        elif not os.access(absolute, os.R_OK):
            yield WalkProblem(path, "cannot be read: permission denied")
        else:
            yield FolderFile(path, absolute, status.st_size, status.st_mtime_ns)
        return None


def _open_directory(path: str, absolute: Path, ignore_files: tuple[IgnoreFile, ...]) -> _Opened:
    """The directory with the .gitignore it holds, and its entries sorted by name; raises
    OSError (UnreadableGitignore among them)."""
    with os.scandir(absolute) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    if any(entry.name == GITIGNORE for entry in entries):
        ignore_file = read_gitignore(path, absolute / GITIGNORE)
        if ignore_file is not None:
            ignore_files = (*ignore_files, ignore_file)
    return _Directory(path, absolute, ignore_files), entries


def _is_utf8(name: str) -> bool:
    # Python hands over undecodable bytes of a file name as lone surrogates.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_name(path: str) -> WalkProblem:
    # The path could not be stored as text: the problem shows it readably.
    readable = os.fsencode(path).decode("utf-8", errors="replace")
    return WalkProblem(readable, "name is not UTF-8")


def _is_symlink(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False  # then its own stat below reports what is wrong


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return exc.strerror or str(exc)
