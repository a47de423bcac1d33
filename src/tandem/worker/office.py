"""Extractors for PDF (pypdf) and DOCX (python-docx)."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import OpcError
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph
from pypdf import PasswordType, PdfReader
from pypdf.errors import LimitReachedError, PyPdfError

from tandem.documents.parsed import CorruptFile, Extracted, reason
from tandem.worker.archives import check_zip
from tandem.worker.limits import TextBudget, Upload

# pypdf's own errors, plus the builtins its object parser is known to leak on malformed
# files (a bad xref entry surfaces as KeyError/IndexError, a bad stream as zlib.error).
_PDF_ERRORS = (PyPdfError, ValueError, KeyError, IndexError, TypeError, zlib.error, RecursionError)
# Not a zip, a zip that is not a Word package, or a package part that is not valid XML
# (lxml's XMLSyntaxError is a SyntaxError).
_DOCX_ERRORS = (
    zipfile.BadZipFile,
    KeyError,
    ValueError,
    OpcError,
    SyntaxError,
    zlib.error,
    EOFError,
)


def extract_pdf(upload: Upload) -> Extracted:
    filename, limits = upload.filename, upload.limits
    try:
        reader = PdfReader(io.BytesIO(upload.data))
        encrypted = reader.is_encrypted
        # Many "encrypted" PDFs only restrict printing and open with the empty password.
        locked = encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except _PDF_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid PDF ({reason(exc)})") from exc
    if locked:
        raise CorruptFile(filename, "the PDF is password-protected")
    try:
        page_count = len(reader.pages)
        info = reader.metadata
        title = str(info.title) if info is not None and info.title else None
    except _PDF_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid PDF ({reason(exc)})") from exc
    budget = TextBudget(limits.max_extracted_chars)
    read = min(page_count, limits.max_pdf_pages)
    unreadable = 0
    limit_hit: LimitReachedError | None = None
    for number in range(read):
        # One damaged page should not cost the rest of the document.
        try:
            text = reader.pages[number].extract_text().strip()
        except LimitReachedError as exc:  # pypdf's bound on decompression or parsing work
            unreadable, limit_hit = unreadable + 1, exc
            continue
        except _PDF_ERRORS:
            unreadable += 1
            continue
        if text and not budget.add(text):
            read = number + 1
            break
    if read and unreadable == read:
        if limit_hit is not None:
            raise CorruptFile(
                filename, f"not indexed: the PDF exceeds a safety limit ({limit_hit})"
            )
        raise CorruptFile(filename, "not a valid PDF (no page could be read)")
    metadata = {"pages": str(page_count)}
    if unreadable:
        metadata["unreadable_pages"] = str(unreadable)
    if read < page_count:
        metadata["truncated"] = "true"
        metadata["pages_read"] = str(read)
    if encrypted:
        metadata["encrypted"] = "true"
    text = budget.join("\n\n")
    return Extracted(title=title or _first_line(text), text=text, metadata=budget.note(metadata))


def _first_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def extract_docx(upload: Upload) -> Extracted:
    filename = upload.filename
    check_zip(filename, upload.data, "DOCX", upload.limits)
    try:
        document = docx.Document(io.BytesIO(upload.data))
        blocks = list(_blocks(document))
        core = document.core_properties
        core_title, author = core.title, core.author
    except _DOCX_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid DOCX file ({reason(exc)})") from exc
    heading = next((text for text, is_heading in blocks if is_heading and text.strip()), None)
    first = next((text for text, _ in blocks if text.strip()), None)
    title = (core_title or "").strip() or heading or first
    metadata = {"author": author.strip()} if author and author.strip() else {}
    budget = TextBudget(upload.limits.max_extracted_chars)
    for text, _ in blocks:
        if text.strip() and not budget.add(text):
            break
    return Extracted(title=title, text=budget.join("\n\n"), metadata=budget.note(metadata))


def _blocks(container: DocxDocument | _Cell) -> Iterator[tuple[str, bool]]:
    """(text, is_heading) for each paragraph and table, in document order."""
    for item in container.iter_inner_content():
        if isinstance(item, Paragraph):
            yield item.text, _is_heading(item)
        elif isinstance(item, Table):
            yield _table_text(item), False


def _is_heading(paragraph: Paragraph) -> bool:
    style = paragraph.style
    name = style.name if style is not None else None
    return bool(name) and str(name).startswith(("Title", "Heading"))


def _table_text(table: Table) -> str:
    """One line per row, cells separated by " | "; nested tables are flattened into cells."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: _Cell | None = None
        for cell in row.cells:
            if cell is previous:  # a horizontally merged cell repeats once per grid column
                continue
            previous = cell
            text = " ".join(" ".join(t.split()) for t, _ in _blocks(cell) if t.strip())
            if text:
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)
