"""Extractors for the Office Open XML spreadsheet and presentation formats: XLSX (openpyxl,
read-only: rows are streamed, never the whole sheet held) and PPTX (python-pptx)."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator

import openpyxl
import pptx
from openpyxl.utils.exceptions import InvalidFileException
from pptx.exc import PythonPptxError
from pptx.shapes.base import BaseShape
from pptx.shapes.group import GroupShape
from pptx.slide import Slide

from tandem.documents.parsed import CorruptFile, Extracted, reason
from tandem.worker.archives import check_zip
from tandem.worker.limits import TextBudget, Upload

# A damaged package: no zip, missing parts, XML that does not parse (ElementTree's and
# lxml's syntax errors are SyntaxErrors; defusedxml's refusals of entities ValueErrors).
_PACKAGE_ERRORS = (
    zipfile.BadZipFile,
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    SyntaxError,
    zlib.error,
    EOFError,
    InvalidFileException,
    PythonPptxError,
)
# Cells read per row: a cell far to the right (column XFD) would otherwise make every row
# that many cells wide.
_MAX_COLUMNS = 1024


def extract_xlsx(upload: Upload) -> Extracted:
    filename, limits = upload.filename, upload.limits
    check_zip(filename, upload.data, "XLSX", limits)
    budget = TextBudget(limits.max_extracted_chars)
    rows_left = limits.max_sheet_rows
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(upload.data), read_only=True, data_only=True)
        try:
            title = workbook.properties.title
            author = workbook.properties.creator
            sheets = workbook.worksheets
            for sheet in sheets:
                if rows_left <= 0 or budget.full:
                    break
                budget.add(f"{sheet.title}\n")
                # The declared dimensions may be wrong (or hostile); rows are read as found.
                sheet.reset_dimensions()
                for values in sheet.iter_rows(max_col=_MAX_COLUMNS, values_only=True):
                    rows_left -= 1
                    line = _row_text(values)
                    if (line and not budget.add(line + "\n")) or rows_left <= 0:
                        break
                budget.add("\n")
        finally:
            workbook.close()
    except _PACKAGE_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid XLSX file ({reason(exc)})") from exc
    metadata = {"sheets": str(len(sheets))}
    if author and author.strip():
        metadata["author"] = author.strip()
    if rows_left <= 0:
        budget.truncated = True
    return Extracted(
        title=(title or "").strip() or None, text=budget.join(""), metadata=budget.note(metadata)
    )


def _row_text(values: tuple[object, ...]) -> str:
    """A row as tab-separated cells; line breaks inside a cell become spaces."""
    cells = ["" if value is None else " ".join(str(value).split()) for value in values]
    while cells and not cells[-1]:
        cells.pop()
    return "\t".join(cells)


def extract_pptx(upload: Upload) -> Extracted:
    filename, limits = upload.filename, upload.limits
    check_zip(filename, upload.data, "PPTX", limits)
    budget = TextBudget(limits.max_extracted_chars)
    first_title: str | None = None
    try:
        presentation = pptx.Presentation(io.BytesIO(upload.data))
        core = presentation.core_properties
        core_title, author = core.title, core.author
        slides = list(presentation.slides)
        for slide in slides:
            slide_title, texts = _slide_texts(slide)
            first_title = first_title or slide_title
            if texts and not budget.add("\n\n".join(texts) + "\n\n"):
                break
    except _PACKAGE_ERRORS as exc:
        raise CorruptFile(filename, f"not a valid PPTX file ({reason(exc)})") from exc
    metadata = {"slides": str(len(slides))}
    if author and author.strip():
        metadata["author"] = author.strip()
    title = (core_title or "").strip() or first_title
    return Extracted(title=title, text=budget.join(""), metadata=budget.note(metadata))


def _slide_texts(slide: Slide) -> tuple[str | None, list[str]]:
    """The slide's title, and its texts: the title first, then each text frame and table
    (in group shapes too), then the speaker notes."""
    title_shape = slide.shapes.title
    title = _clean(title_shape.text_frame.text) if title_shape is not None else ""
    texts = [title] if title else []
    for shape in _shapes(slide):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            text = _clean(shape.text_frame.text)  # type: ignore[attr-defined]
            if text:
                texts.append(text)
        if getattr(shape, "has_table", False) and shape.has_table:
            rows = (
                " | ".join(t for t in (_clean(c.text) for c in row.cells) if t)
                for row in shape.table.rows  # type: ignore[attr-defined]
            )
            table = "\n".join(r for r in rows if r)
            if table:
                texts.append(table)
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = _clean(frame.text) if frame is not None else ""
        if notes:
            texts.append(f"Notes: {notes}")
    return title or None, texts


def _shapes(slide: Slide) -> Iterator[BaseShape]:
    """Every shape on the slide, group members included (iteratively: groups nest)."""
    stack: list[BaseShape] = list(reversed(list(slide.shapes)))
    while stack:
        shape = stack.pop()
        if isinstance(shape, GroupShape):
            stack.extend(reversed(list(shape.shapes)))
        else:
            yield shape


def _clean(text: str) -> str:
    # python-pptx writes a line break inside a paragraph as a vertical tab.
    return text.replace("\v", "\n").strip()
