"""Reading one file a folder walk found, with the version of exactly the bytes read."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.sources.folder import FolderFile

# A file that keeps changing is read this many times before its version is given up on.
_READ_ATTEMPTS = 3
_CHUNK_BYTES = 1 << 20
UNKNOWN_VERSION = ""


def file_version(size: int, mtime_ns: int) -> str:
    return f"{size}:{mtime_ns}"


class NotARegularFile(OSError):
    """The path holds a fifo, socket, device or directory now (it did not when walked)."""


def read_file(file: FolderFile, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes (at most `max_bytes`) and the version ("size:mtime_ns") they are.

    When the file changes while it is read (or grows past `max_bytes`) on every attempt,
    the last bytes read come back with the version "": unknown, so the next sync reads it
    again. Raises OSError when the file cannot be opened (FileNotFoundError when it is
    gone), NotARegularFile when it is no longer a regular file."""
    data = b""
    for _ in range(_READ_ATTEMPTS):
        data, version = _read_once(file.absolute, max_bytes)
        if version != UNKNOWN_VERSION:
            return data, version
    return data, UNKNOWN_VERSION


def _read_once(path: Path, max_bytes: int) -> tuple[bytes, str]:
    # Checked before opening as well as after: opening some devices has side effects.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise NotARegularFile(f"{path}: not a regular file")
    # O_NONBLOCK: if a fifo took the file's place since, opening it must not block.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        before = os.fstat(descriptor)
        if not stat.S_ISREG(before.st_mode):
            raise NotARegularFile(f"{path}: not a regular file")
        chunks: list[bytes] = []
        remaining = max_bytes + 1  # one byte more shows that the file is over the limit
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, _CHUNK_BYTES))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        after = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    try:
        # The path may name another file by now (replaced by a rename): that one is new.
        current = os.stat(path)
    except FileNotFoundError:
        current = None
    unchanged = (
        len(data) <= max_bytes
        and len(data) == before.st_size == after.st_size
        and before.st_mtime_ns == after.st_mtime_ns
        and current is not None
        and (current.st_dev, current.st_ino) == (after.st_dev, after.st_ino)
        and (current.st_size, current.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    )
    if not unchanged:
        return data[:max_bytes], UNKNOWN_VERSION
    return data, file_version(after.st_size, after.st_mtime_ns)
