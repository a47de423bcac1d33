"""What one parse may take: the bounds every extractor works within, and the upload as the
extractors see it. A hostile file is stopped by these before it can cost much; the sandbox
(worker/sandbox.py) is the backstop for whatever slips past them."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    # Text kept per document (TANDEM_MAX_EXTRACTED_CHARS); the rest is cut, and the
    # document's metadata says so. 10 M characters is some 2 M words: a long book.
    max_extracted_chars: int = 10_000_000
    # Pages read from a PDF; later pages are left out (noted in the metadata).
    max_pdf_pages: int = 2_000
    # Rows read from a spreadsheet, over all its sheets.
    max_sheet_rows: int = 200_000
    # A JSON path ("a.b[3].c") is cut to this many characters: a long key repeated over a
    # long array would otherwise cost len(key) * len(array).
    max_json_path_chars: int = 200
    # Metadata taken from a document's fields: this many, each value cut to max_field_chars.
    max_metadata_fields: int = 50
    max_field_chars: int = 1_000
    # Archive members (DOCX, XLSX, PPTX, ODT, EPUB are ZIP packages), checked against their
    # declared sizes before anything is read: Python's zipfile never inflates a member past
    # its declared size, so these bound what the libraries can unpack.
    max_archive_members: int = 10_000
    max_member_bytes: int = 128 * MIB
    max_unpacked_bytes: int = 256 * MIB
    # Inflating more than this per compressed byte marks a bomb (text XML reaches ~20:1,
    # a long repetitive sheet ~100:1) once a member unpacks past ratio_floor_bytes.
    max_compression_ratio: int = 200
    ratio_floor_bytes: int = 4 * MIB


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload as an extractor sees it."""

    filename: str
    data: bytes
    charset: str | None = None  # the declared type's charset= parameter
    limits: ParseLimits = ParseLimits()
    content_type: str | None = None  # as declared by the uploader


class TextBudget:
    """Collects an extractor's pieces of text up to the character limit, so a document that
    would extract to gigabytes stops growing at the limit instead of after."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit
        self.truncated = False

    @property
    def full(self) -> bool:
        return self.left <= 0

    def add(self, text: str) -> bool:
        """Keep `text` (or as much as fits); False once the budget is spent."""
        if self.full:
            self.truncated = self.truncated or bool(text)
            return False
        if len(text) > self.left:
            text = text[: self.left]
            self.truncated = True
        self.parts.append(text)
        self.left -= len(text)
        return not self.full

    def join(self, separator: str) -> str:
        return separator.join(self.parts)

    def note(self, metadata: dict[str, str]) -> dict[str, str]:
        """`metadata`, plus the mark that the text was cut."""
        return {**metadata, "truncated": "true"} if self.truncated else metadata
