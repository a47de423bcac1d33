"""ZIP packages (DOCX, XLSX, PPTX, ODT, EPUB) opened only after their central directory
passes the archive limits: a zip bomb is refused before a byte of it is inflated."""

from __future__ import annotations

import io
import zipfile

from tandem.documents.parsed import CorruptFile, reason
from tandem.worker.limits import MIB, ParseLimits

# What zipfile raises on a damaged archive: a bad directory, a truncated or lying member.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, KeyError)


def check_zip(filename: str, data: bytes, kind: str, limits: ParseLimits) -> zipfile.ZipFile:
    """The archive, once every member's declared size and compression ratio are within
    `limits`. zipfile stops inflating a member at its declared size (and then fails its
    CRC check), so the declared sizes bound what any library reading it can unpack."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except ZIP_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid {kind} file ({reason(exc)})") from exc
    if len(members) > limits.max_archive_members:
        raise CorruptFile(
            filename,
            f"not indexed: the {kind} package has {len(members)} parts "
            f"(at most {limits.max_archive_members})",
        )
    total = 0
    for member in members:
        size = member.file_size
        total += size
        if size > limits.max_member_bytes:
            raise CorruptFile(
                filename,
                f"not indexed: {member.filename!r} in the {kind} package unpacks to "
                f"{size // MIB} MiB (at most {limits.max_member_bytes // MIB} MiB)",
            )
        if total > limits.max_unpacked_bytes:
            raise CorruptFile(
                filename,
                f"not indexed: the {kind} package unpacks to more than "
                f"{limits.max_unpacked_bytes // MIB} MiB",
            )
        ratio = size / max(member.compress_size, 1)
        if size > limits.ratio_floor_bytes and ratio > limits.max_compression_ratio:
            raise CorruptFile(
                filename,
                f"not indexed: {member.filename!r} in the {kind} package is compressed "
                f"{ratio:.0f}:1 (a zip bomb?)",
            )
    return archive


def read_member(filename: str, archive: zipfile.ZipFile, name: str, kind: str) -> bytes:
    """One member's bytes (already bounded by check_zip), or a CorruptFile naming it."""
    try:
        return archive.read(name)
    except ZIP_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid {kind} file ({name}: {reason(exc)})") from exc
