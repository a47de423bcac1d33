"""What parsing produces, and how it fails: shared by the parser and the format extractors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
    source: str  # the uploaded filename
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
