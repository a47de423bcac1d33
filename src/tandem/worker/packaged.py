"""Extractors for the ZIP-of-XML book and word-processing formats: ODT (content.xml) and
EPUB (the spine's XHTML chapters in reading order, the title from the OPF metadata).

XML is parsed with defusedxml (no entity expansion, no external resources) and walked with
explicit stacks: expat puts no bound on nesting, so a recursive walk could overflow.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from bs4 import UnicodeDammit
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from tandem.documents.parsed import CorruptFile, Extracted, reason
from tandem.worker.archives import check_zip, read_member
from tandem.worker.html_text import html_to_text
from tandem.worker.limits import TextBudget, Upload

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_OPF = "{http://www.idpf.org/2007/opf}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_PARAGRAPHS = (f"{_TEXT}p", f"{_TEXT}h")
# Inline elements that stand for characters, and parts of a paragraph that are no text.
_INLINE = {f"{_TEXT}tab": "\t", f"{_TEXT}line-break": "\n"}
_SKIPPED = frozenset({f"{_TEXT}note-citation", f"{_OFFICE}annotation", f"{_TEXT}tracked-changes"})
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})


def _xml(filename: str, data: bytes, kind: str, part: str) -> Element:
    try:
        return fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as exc:
        raise CorruptFile(filename, f"not a valid {kind} file ({part}: {reason(exc)})") from exc


def extract_odt(upload: Upload) -> Extracted:
    filename = upload.filename
    archive = check_zip(filename, upload.data, "ODT", upload.limits)
    names = set(archive.namelist())
    if "content.xml" not in names:
        raise CorruptFile(filename, "not a valid ODT file (it has no content.xml)")
    content = _xml(
        filename, read_member(filename, archive, "content.xml", "ODT"), "ODT", "content.xml"
    )
    budget = TextBudget(upload.limits.max_extracted_chars)
    heading: str | None = None
    for text, is_heading in _odt_blocks(content):
        heading = heading or (text if is_heading else None)
        if not budget.add(text + "\n\n"):
            break
    metadata: dict[str, str] = {}
    title = None
    if "meta.xml" in names:
        meta = _xml(filename, read_member(filename, archive, "meta.xml", "ODT"), "ODT", "meta.xml")
        title = _first_text(meta, f"{_DC}title")
        author = _first_text(meta, f"{_DC}creator")
        if author:
            metadata["author"] = author
    return Extracted(title=title or heading, text=budget.join(""), metadata=budget.note(metadata))


def _odt_blocks(root: Element) -> Iterator[tuple[str, bool]]:
    """(text, is_heading) per paragraph, heading and table row, in document order."""
    stack = [root]
    while stack:
        element = stack.pop()
        if element.tag in _PARAGRAPHS:
            text = _inline_text(element).strip()
            if text:
                yield text, element.tag == f"{_TEXT}h"
        elif element.tag == f"{_TABLE}table-row":
            cells = (" ".join(_inline_text(cell).split()) for cell in element)
            row = " | ".join(cell for cell in cells if cell)
            if row:
                yield row, False
        elif element.tag not in _SKIPPED:
            stack.extend(reversed(list(element)))


def _inline_text(root: Element) -> str:
    """All text inside `root`, with ODF's space, tab and line-break elements expanded."""
    parts: list[str] = []
    # (element, entering): on entering its text and children; on leaving its tail.
    stack: list[tuple[Element, bool]] = [(root, True)]
    while stack:
        element, entering = stack.pop()
        if not entering:
            if element is not root and element.tail:
                parts.append(element.tail)
            continue
        stack.append((element, False))
        if element.tag in _SKIPPED:
            continue
        if element.tag == f"{_TEXT}s":
            parts.append(" " * min(int(element.get(f"{_TEXT}c", "1") or 1), 100))
        elif element.tag in _INLINE:
            parts.append(_INLINE[element.tag])
        elif element.tag in _PARAGRAPHS and element is not root and parts:
            parts.append("\n")  # a paragraph inside a frame or cell starts a line
        if element.text:
            parts.append(element.text)
        stack.extend((child, True) for child in reversed(list(element)))
    return "".join(parts)


def _first_text(root: Element, tag: str) -> str | None:
    found = next(root.iter(tag), None)
    text = " ".join((found.text or "").split()) if found is not None else ""
    return text or None


def extract_epub(upload: Upload) -> Extracted:
    filename = upload.filename
    archive = check_zip(filename, upload.data, "EPUB", upload.limits)
    container = _xml(
        filename, _member(filename, archive, "META-INF/container.xml"), "EPUB", "container.xml"
    )
    rootfile = next(container.iter(f"{_CONTAINER}rootfile"), None)
    opf_path = rootfile.get("full-path") if rootfile is not None else None
    if not opf_path:
        raise CorruptFile(filename, "not a valid EPUB file (container.xml names no package)")
    package = _xml(filename, _member(filename, archive, opf_path), "EPUB", opf_path)
    manifest = {
        item.get("id"): (item.get("href") or "", item.get("media-type") or "")
        for item in package.iter(f"{_OPF}item")
    }
    base = posixpath.dirname(opf_path)
    budget = TextBudget(upload.limits.max_extracted_chars)
    first_title: str | None = None
    chapters = 0
    for itemref in package.iter(f"{_OPF}itemref"):
        href, media_type = manifest.get(itemref.get("idref"), ("", ""))
        if not href or media_type not in _HTML_TYPES:
            continue
        path = posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))
        chapter = UnicodeDammit(_member(filename, archive, path), is_html=True).unicode_markup
        title, text, _ = html_to_text(chapter or "", budget.left)
        chapters += 1
        first_title = first_title or title
        if not budget.add(text.strip() + "\n\n"):
            break
    if not chapters:
        raise CorruptFile(filename, "not a valid EPUB file (its spine lists no chapters)")
    metadata = {"chapters": str(chapters)}
    for tag, key in ((f"{_DC}creator", "author"), (f"{_DC}language", "language")):
        value = _first_text(package, tag)
        if value:
            metadata[key] = value
    title = _first_text(package, f"{_DC}title") or first_title
    return Extracted(title=title, text=budget.join(""), metadata=budget.note(metadata))


def _member(filename: str, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        archive.getinfo(name)
    except KeyError as exc:
        raise CorruptFile(filename, f"not a valid EPUB file (it has no {name})") from exc
    return read_member(filename, archive, name, "EPUB")
