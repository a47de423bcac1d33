"""Turn an uploaded file into a ParsedDocument: detect the type, extract title and text.

Pure functions of (filename, bytes, declared type, limits): no I/O, so the sandbox's child
processes, the Celery task and the tests call the same code. Every failure is a ParseError
whose message names the file. `DocumentParser` is how the pipeline asks for a parse: in a
sandboxed child process (worker/sandbox.py) or, for tests, in this one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePath
from typing import Protocol

from tandem.documents.parsed import (
    SUPPORTED_EXTENSIONS,
    ContentType,
    CorruptFile,
    EmptyDocument,
    Extracted,
    ParsedDocument,
    ParseError,
    UnsupportedFileType,
    declared_charset,
    detect_content_type,
)
from tandem.worker.limits import ParseLimits, Upload
from tandem.worker.mail import extract_eml
from tandem.worker.office import extract_docx, extract_pdf
from tandem.worker.ooxml import extract_pptx, extract_xlsx
from tandem.worker.packaged import extract_epub, extract_odt
from tandem.worker.textual import (
    extract_code,
    extract_html,
    extract_json,
    extract_markdown,
    extract_plain,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ContentType",
    "CorruptFile",
    "DocumentParser",
    "EmptyDocument",
    "InProcessParser",
    "ParseError",
    "ParseLimits",
    "ParsedDocument",
    "UnsupportedFileType",
    "detect_content_type",
    "parse_document",
]

_EXTRACTORS: dict[ContentType, Callable[[Upload], Extracted]] = {
    ContentType.TEXT: extract_plain,
    ContentType.CODE: extract_code,
    ContentType.MARKDOWN: extract_markdown,
    ContentType.HTML: extract_html,
    ContentType.PDF: extract_pdf,
    ContentType.DOCX: extract_docx,
    ContentType.XLSX: extract_xlsx,
    ContentType.PPTX: extract_pptx,
    ContentType.ODT: extract_odt,
    ContentType.EPUB: extract_epub,
    ContentType.EML: extract_eml,
    ContentType.JSON: extract_json,
}

_MAX_TITLE_CHARS = 200
# Part of every document's content hash: bump it when parsing gives other text for the
# same bytes, so documents are parsed again instead of being called unchanged.
PARSER_VERSION = "3"

_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t\f\v]*\n)+")


def parse_document(
    filename: str,
    data: bytes,
    content_type: str | None = None,
    limits: ParseLimits | None = None,
) -> ParsedDocument:
    limits = limits or ParseLimits()
    kind = detect_content_type(filename, content_type, head=data)
    upload = Upload(filename, data, declared_charset(content_type), limits, content_type)
    extracted = _EXTRACTORS[kind](upload)
    text = _normalize(extracted.text, keep_indent=kind is ContentType.CODE)
    metadata = extracted.metadata
    if len(text) > limits.max_extracted_chars:
        text = text[: limits.max_extracted_chars].rstrip()
        metadata = {**metadata, "truncated": "true"}
    if metadata.get("truncated") == "true":
        metadata = {**metadata, "max_chars": str(limits.max_extracted_chars)}
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
        metadata=metadata,
    )


def _normalize(text: str, keep_indent: bool = False) -> str:
    # PostgreSQL text cannot hold NUL, and PDFs with odd font encodings do produce it.
    # Line breaks are kept as they are (only CRLF and CR become LF): the chunker and the
    # snippets of code, configuration and plain text depend on them.
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    if keep_indent:  # code: the first line's indentation is part of it
        return _LEADING_BLANK_LINES.sub("", text).rstrip()
    return text.strip()


def _title(found: str | None, filename: str) -> str:
    title = " ".join((found or "").replace("\x00", "").split())
    if not title:
        title = PurePath(filename).stem or filename
    if len(title) > _MAX_TITLE_CHARS:
        title = title[: _MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title


class DocumentParser(Protocol):
    """Parses one upload; `close` releases what the parser holds (child processes)."""

    def parse(self, filename: str, data: bytes, content_type: str | None) -> ParsedDocument: ...

    def close(self) -> None: ...


class InProcessParser:
    """parse_document in the calling thread: no isolation, for tests and tools."""

    def __init__(self, limits: ParseLimits | None = None) -> None:
        self.limits = limits or ParseLimits()

    def parse(self, filename: str, data: bytes, content_type: str | None) -> ParsedDocument:
        return parse_document(filename, data, content_type, self.limits)

    def close(self) -> None:
        return None
