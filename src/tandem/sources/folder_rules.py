"""Which paths of a folder a walk takes: the source's include and exclude globs and the
.gitignore files at every level, matched the way git matches them."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

GITIGNORE = ".gitignore"
# A .gitignore is a short list of patterns; a huge one is a mistake, not something to load.
_MAX_GITIGNORE_BYTES = 1 << 20


@dataclass(frozen=True)
class IgnoreFile:
    """The patterns of one .gitignore and the directory (relative to the root, "" for the
    root itself) its patterns are relative to."""

    directory: str
    spec: GitIgnoreSpec

    def decision(self, path: str) -> bool | None:
        """True: ignored, False: re-included by a negation, None: no pattern matches."""
        if self.directory:
            path = path[len(self.directory) + 1 :]
        return self.spec.check_file(path).include


def is_ignored(path: str, ignore_files: Sequence[IgnoreFile]) -> bool:
    """`path` ends with "/" for a directory, so that "build/" patterns match only those.

    Git lets the deepest .gitignore that has an opinion decide (and, inside one file, the
    last matching pattern, which GitIgnoreSpec already does)."""
    for ignore_file in reversed(ignore_files):
        decision = ignore_file.decision(path)
        if decision is not None:
            return decision
    return False


class UnreadableGitignore(OSError):
    """A .gitignore that cannot be read: what it would hide is unknown, so the directory
    is not walked at all rather than walked with its ignored files showing."""


def read_gitignore(directory: str, absolute: Path) -> IgnoreFile | None:
    """The .gitignore at `absolute` (a file in `directory`), None when it is not a regular
    file; raises UnreadableGitignore."""
    try:
        # O_NONBLOCK: a fifo named .gitignore must not block the walk on open.
        descriptor = os.open(absolute, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # removed since the directory was listed
    except OSError as exc:
        raise UnreadableGitignore(f"cannot read {GITIGNORE}: {exc.strerror}") from exc
    try:
        status = os.fstat(descriptor)
        regular = stat.S_ISREG(status.st_mode)
        data = os.read(descriptor, _MAX_GITIGNORE_BYTES + 1) if regular else b""
    except OSError as exc:
        raise UnreadableGitignore(f"cannot read {GITIGNORE}: {exc.strerror}") from exc
    finally:
        os.close(descriptor)
    if not regular:
        return None
    if len(data) > _MAX_GITIGNORE_BYTES:
        raise UnreadableGitignore(f"{GITIGNORE} exceeds the {_MAX_GITIGNORE_BYTES}-byte limit")
    # Decoded like file names are, so a pattern can match any name the walk sees.
    lines = os.fsdecode(data).splitlines()
    try:
        spec = GitIgnoreSpec.from_lines(lines)
    except ValueError:  # a malformed line ("!" alone): git skips it, and so do we
        spec = GitIgnoreSpec.from_lines([line for line in lines if _is_pattern(line)])
    return IgnoreFile(directory, spec)


def _is_pattern(line: str) -> bool:
    try:
        GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Selection:
    """The source's own globs (gitignore syntax, on the path relative to the root):
    a file is taken when `include` is empty or matches it, and `exclude` does not."""

    include: GitIgnoreSpec | None
    exclude: GitIgnoreSpec

    @classmethod
    def of(cls, include: Sequence[str], exclude: Sequence[str]) -> Selection:
        """Raises ValueError for a malformed glob."""
        return cls(
            include=GitIgnoreSpec.from_lines(include) if include else None,
            exclude=GitIgnoreSpec.from_lines(exclude),
        )

    def takes_file(self, path: str) -> bool:
        if self.exclude.match_file(path):
            return False
        return self.include is None or self.include.match_file(path)

    def enters_directory(self, path: str) -> bool:
        # An excluded directory is not entered (as git does not enter an ignored one): a
        # pattern that matches a directory also matches every path below it.
        return not self.exclude.match_file(f"{path}/")
