"""Turn an uploaded file into a ParsedDocument: detect the type, extract title and text.

Pure functions of (filename, bytes, declared type): no I/O, so the Celery task and the
tests call the same code. Every failure is a ParseError whose message names the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from tandem.documents import (
    SUPPORTED_EXTENSIONS,
    ContentType,
    CorruptFile,
    EmptyDocument,
    Extracted,
    ParsedDocument,
    ParseError,
    UnsupportedFileType,
    detect_content_type,
)
from tandem.worker.office import extract_docx, extract_pdf
from tandem.worker.textual import extract_html, extract_json, extract_markdown, extract_plain

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ContentType",
    "CorruptFile",
    "EmptyDocument",
    "ParseError",
    "ParsedDocument",
    "UnsupportedFileType",
    "detect_content_type",
    "parse_document",
]

_EXTRACTORS: dict[ContentType, Callable[[str, bytes], Extracted]] = {
    ContentType.TEXT: extract_plain,
    ContentType.MARKDOWN: extract_markdown,
    ContentType.HTML: extract_html,
    ContentType.PDF: extract_pdf,
    ContentType.DOCX: extract_docx,
    ContentType.JSON: extract_json,
}

_MAX_TITLE_CHARS = 200
# Part of every document's content hash: bump it when parsing gives other text for the
# same bytes, so documents are parsed again instead of being called unchanged.
PARSER_VERSION = "2"


def parse_document(filename: str, data: bytes, content_type: str | None = None) -> ParsedDocument:
    kind = detect_content_type(filename, content_type)
    extracted = _EXTRACTORS[kind](filename, data)
    text = _normalize(extracted.text)
    if not text:
        detail = (
            "no text could be extracted (a scanned PDF? OCR is not supported)"
            if kind is ContentType.PDF
            else "no text could be extracted"
        )
        raise EmptyDocument(filename, detail)
    return ParsedDocument(
        title=_title(extracted.title, filename),
        text=text,
        path=filename,
        content_type=kind.value,
        metadata=extracted.metadata,
    )


def _normalize(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and PDFs with odd font encodings do produce it.
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def _title(found: str | None, filename: str) -> str:
    title = " ".join((found or "").replace("\x00", "").split())
    if not title:
        title = PurePath(filename).stem or filename
    if len(title) > _MAX_TITLE_CHARS:
        title = title[: _MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title
