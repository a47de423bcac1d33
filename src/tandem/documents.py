"""What an upload is and becomes, and how it fails: the content types, their detection,
the parsed document and the parse errors. Shared by the API (which rejects an unsupported
type at upload) and the worker's parser and extractors; no parsing library is imported
here, so the API loads none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath


class ContentType(StrEnum):
    """The normalized types the worker accepts; a StrEnum so it compares equal to the string."""

    TEXT = "text/plain"
    MARKDOWN = "text/markdown"
    HTML = "text/html"
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
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
    """Neither the extension nor the declared content type is one we parse."""


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
    ".pdf": ContentType.PDF,
    ".docx": ContentType.DOCX,
    ".json": ContentType.JSON,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_BY_EXTENSION)

# Declared types browsers and clients actually send, beyond the canonical ones.
_BY_CONTENT_TYPE = {t.value: t for t in ContentType} | {
    "text/x-markdown": ContentType.MARKDOWN,
    "application/xhtml+xml": ContentType.HTML,
    "text/json": ContentType.JSON,
    "application/x-pdf": ContentType.PDF,
}


def detect_content_type(filename: str, content_type: str | None = None) -> ContentType:
    """The extension decides; the declared type is used only when the extension is unknown
    (clients often send application/octet-stream, or text/plain for anything)."""
    extension = PurePath(filename).suffix.lower()
    if extension in _BY_EXTENSION:
        return _BY_EXTENSION[extension]
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[declared]
    what = f"'{extension}'" if extension else "without an extension"
    if declared:
        what += f" ({declared})"
    supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    raise UnsupportedFileType(filename, f"unsupported file type {what}; supported: {supported}")
