"""What an upload is and becomes, and how it fails: the content types, their detection,
the parsed document and the parse errors. Shared by the API (which refuses at upload what is
certainly not indexable) and the worker's parser and extractors; no parsing library is
imported here, so the API loads none of them.

A file's type: a known document format (by extension, then by its bytes' signature, then by
the declared type) has its extractor; any other file is indexed as text when its bytes are
text (the worker's decoder decides), and a binary file is refused with what it looks like.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from io import BytesIO
from pathlib import PurePath

from tandem.documents.kinds import (
    BINARY_DECLARED_PREFIXES,
    BINARY_EXTENSIONS,
    CODE_DECLARED,
    CODE_EXTENSIONS,
    CODE_NAMES,
    binary_signature,
    shebang_language,
)


class ContentType(StrEnum):
    """The normalized types the worker accepts; a StrEnum so it compares equal to the string."""

    TEXT = "text/plain"
    # Source code, configuration and data files: text whose lines and indentation matter.
    CODE = "text/x-code"
    MARKDOWN = "text/markdown"
    HTML = "text/html"
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    ODT = "application/vnd.oasis.opendocument.text"
    EPUB = "application/epub+zip"
    EML = "message/rfc822"
    JSON = "application/json"


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    text: str
    path: str  # where it came from: the uploaded file's path, a folder path, a URL
    content_type: str  # a ContentType value
    metadata: dict[str, str] = field(default_factory=dict)


class ParseError(ValueError):
    """An upload the worker cannot index; the message is meant for the uploader."""

    def __init__(self, filename: str, detail: str) -> None:
        super().__init__(f"{filename}: {detail}")
        self.filename = filename
        self.detail = detail


class UnsupportedFileType(ParseError):
    """A file we do not index: binary data that is no document format we parse."""


class CorruptFile(ParseError):
    """The type is supported but the bytes are not a valid file of that type."""


class EmptyDocument(ParseError):
    """The file is valid but holds no text (e.g. a scanned PDF without a text layer)."""

    def __init__(self, filename: str, detail: str = "no text could be extracted") -> None:
        super().__init__(filename, detail)


@dataclass(frozen=True, slots=True)
class Extracted:
    """One extractor's raw result; `parse_document` normalizes it into a ParsedDocument."""

    title: str | None
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


def reason(exc: BaseException) -> str:
    """A library exception's own message, short enough for an error shown to a user."""
    # KeyError's str() wraps the message in quotes; args[0] is the message as raised.
    detail = str(exc.args[0]) if exc.args else ""
    detail = " ".join(detail.split()) or type(exc).__name__
    return detail if len(detail) <= 160 else detail[:157] + "..."


_BY_EXTENSION = {
    ".txt": ContentType.TEXT,
    ".md": ContentType.MARKDOWN,
    ".markdown": ContentType.MARKDOWN,
    ".html": ContentType.HTML,
    ".htm": ContentType.HTML,
    ".xhtml": ContentType.HTML,
    ".pdf": ContentType.PDF,
    ".docx": ContentType.DOCX,
    ".xlsx": ContentType.XLSX,
    ".pptx": ContentType.PPTX,
    ".odt": ContentType.ODT,
    ".epub": ContentType.EPUB,
    ".eml": ContentType.EML,
    ".json": ContentType.JSON,
}
# The formats with an extractor of their own; any other text file is indexed as text too.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_BY_EXTENSION)
_TEXT_TYPES = frozenset(
    {ContentType.TEXT, ContentType.CODE, ContentType.MARKDOWN, ContentType.HTML}
    | {ContentType.JSON, ContentType.EML}
)

# Declared types browsers and clients actually send, beyond the canonical ones.
_BY_CONTENT_TYPE = {t.value: t for t in ContentType} | {
    "text/x-markdown": ContentType.MARKDOWN,
    "application/xhtml+xml": ContentType.HTML,
    "text/json": ContentType.JSON,
    "application/x-pdf": ContentType.PDF,
}
# The package formats whose first ZIP member (stored, uncompressed) names their type.
_ZIP_MIMETYPES = {b"application/vnd.oasis.opendocument.text": ContentType.ODT} | {
    b"application/epub+zip": ContentType.EPUB
}
# Office Open XML packages, told apart by the folder of their main part.
_OOXML_FOLDERS = {"word/": ContentType.DOCX, "xl/": ContentType.XLSX, "ppt/": ContentType.PPTX}
# How much of an upload `screen_upload` looks at.
SNIFF_BYTES = 8192


def declared_charset(content_type: str | None) -> str | None:
    """The charset= parameter of a declared content type, if any."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip("\"'"):
            return value.strip().strip("\"'")
    return None


def text_language(filename: str, content_type: str | None = None, head: bytes = b"") -> str | None:
    """The language of a code or configuration file ("python", "yaml", ...), None for prose."""
    path = PurePath(filename)
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    return (
        CODE_NAMES.get(path.name.lower())
        or CODE_EXTENSIONS.get(path.suffix.lower())
        or shebang_language(head)
        or CODE_DECLARED.get(declared)
    )


def detect_content_type(
    filename: str, content_type: str | None = None, head: bytes = b""
) -> ContentType:
    """The type to parse an upload as. `head` is the file's bytes (all of them, or its
    start): without it only the name and the declared type decide.

    The extension of a known format decides (a text format's not when the bytes are a known
    binary format). Then the bytes' signature: a PDF, an office package, or a binary format
    we refuse (without bytes, a binary extension or declared media type refuses). Then the
    declared type; anything else is text (code when its name or first line says so) for
    the worker's decoder to check."""
    detected = _detect(filename, content_type, head, complete=True)
    assert detected is not None  # complete=True always decides
    return detected


def screen_upload(filename: str, content_type: str | None, head: bytes) -> None:
    """For the API at upload: refuse only what is certainly not indexable, from the name,
    the declared type and the first SNIFF_BYTES bytes (the worker decides the rest)."""
    _detect(filename, content_type, head[:SNIFF_BYTES], complete=False)


def _detect(
    filename: str, content_type: str | None, head: bytes, complete: bool
) -> ContentType | None:
    extension = PurePath(filename).suffix.lower()
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    signature = binary_signature(head)
    by_name = _BY_EXTENSION.get(extension)
    if by_name is not None and not (by_name in _TEXT_TYPES and signature):
        return by_name
    if not head and by_name is None:
        if extension in BINARY_EXTENSIONS:
            _refuse(filename, f"{extension} {BINARY_EXTENSIONS[extension]}")
        if declared.startswith(BINARY_DECLARED_PREFIXES) and declared not in CODE_DECLARED:
            _refuse(filename, declared)
    if head.startswith(b"%PDF-"):
        return ContentType.PDF
    if signature == "ZIP archive":
        kind, decided = _zip_kind(head)
        if kind is not None:
            return kind
        if not decided and not complete:
            return None  # an office package may yet show itself past the head
    if signature:
        _refuse(filename, signature)
    if declared in _BY_CONTENT_TYPE and _BY_CONTENT_TYPE[declared] not in _TEXT_TYPES:
        return _BY_CONTENT_TYPE[declared]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        # Text in any BOM-less encoding we accept never holds NUL; binaries almost always do.
        raise UnsupportedFileType(filename, "unsupported file type: binary data, not text")
    if by_name is not None:
        return by_name
    # A specific declared text format wins over the name; plain text does not (clients
    # declare text/plain for anything textual, code included).
    if _BY_CONTENT_TYPE.get(declared, ContentType.TEXT) is not ContentType.TEXT:
        return _BY_CONTENT_TYPE[declared]
    return ContentType.CODE if text_language(filename, content_type, head) else ContentType.TEXT


def _refuse(filename: str, what: str) -> None:
    raise UnsupportedFileType(
        filename, f"unsupported file type: binary file ({what}) is not indexed"
    )


def _zip_kind(head: bytes) -> tuple[ContentType | None, bool]:
    """The document format of a ZIP, and whether that is decided: an ODF or EPUB package
    names itself in its first member; an Office Open XML one by its folders, read from the
    central directory when `head` is the whole file, else from the local headers in it."""
    if head[30:38] == b"mimetype":
        start = 38 + int.from_bytes(head[28:30], "little")
        size = int.from_bytes(head[18:22], "little")
        kind = _ZIP_MIMETYPES.get(head[start : start + size].strip())
        if kind is not None:
            return kind, True
    try:
        names = zipfile.ZipFile(BytesIO(head)).namelist()
        decided = True
    except (zipfile.BadZipFile, ValueError, EOFError):
        names, decided = _local_names(head), False
    if "[Content_Types].xml" in names:
        for name in names:
            for folder, kind in _OOXML_FOLDERS.items():
                if name.startswith(folder):
                    return kind, True
    return None, decided


def _local_names(head: bytes) -> list[str]:
    """Member names from the local file headers in `head`, as far as they can be walked."""
    names: list[str] = []
    offset = 0
    while head[offset : offset + 4] == b"PK\x03\x04" and len(names) < 100:
        flags = int.from_bytes(head[offset + 6 : offset + 8], "little")
        size = int.from_bytes(head[offset + 18 : offset + 22], "little")
        name_length = int.from_bytes(head[offset + 26 : offset + 28], "little")
        extra_length = int.from_bytes(head[offset + 28 : offset + 30], "little")
        start = offset + 30
        names.append(head[start : start + name_length].decode("cp437", "replace"))
        if flags & 0x08:  # sizes follow the data: the next header cannot be found
            break
        offset = start + name_length + extra_length + size
    return names
