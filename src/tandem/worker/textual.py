"""Extractors for the text-based formats: plain text, Markdown, HTML and JSON."""

from __future__ import annotations

import codecs
import json
import re

from bs4 import BeautifulSoup, Tag
from bs4.builder import ParserRejectedMarkup

from tandem.documents import CorruptFile, Extracted, reason

# UTF-32 first: its little-endian BOM starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Unicode category Cc (C0, DEL, C1) minus the whitespace controls \t \n \v \f \r.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_FRACTION = 0.05


def reject_binary(filename: str, data: bytes) -> None:
    # Text in any BOM-less encoding we accept never holds NUL; binaries almost always do.
    if b"\x00" in data:
        raise CorruptFile(filename, "binary data, not text (contains NUL bytes)")


def decode_text(filename: str, data: bytes) -> tuple[str, str]:
    """Decode an upload that should be text; returns (text, encoding)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _check_controls(filename, data.decode(encoding)), encoding
            except UnicodeDecodeError as exc:
                raise CorruptFile(filename, f"invalid {encoding} text ({exc.reason})") from exc
    reject_binary(filename, data)
    try:
        return _check_controls(filename, data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    # Legacy "ANSI" text is common in uploads. cp1252 (not latin-1, which accepts any byte)
    # leaves five bytes undefined, and the control-character check catches most other junk.
    try:
        return _check_controls(filename, data.decode("cp1252")), "cp1252"
    except UnicodeDecodeError as exc:
        raise CorruptFile(filename, "not UTF-8, UTF-16 or Windows-1252 text") from exc


def _check_controls(filename: str, text: str) -> str:
    if len(_CONTROL_CHARS.findall(text)) > _MAX_CONTROL_FRACTION * len(text):
        raise CorruptFile(filename, "binary data, not text (too many control characters)")
    return text


def extract_plain(filename: str, data: bytes) -> Extracted:
    text, encoding = decode_text(filename, data)
    return Extracted(title=None, text=text, metadata={"encoding": encoding})


_ATX_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading ("# Title") outside fenced code blocks."""
    fence: str | None = None
    for line in text.splitlines():
        opener = _FENCE.match(line)
        if opener:
            marker = opener.group(1)
            fence = None if fence == marker else fence or marker
            continue
        match = _ATX_H1.match(line) if fence is None else None
        if match:
            return match.group(1)
    return None


def extract_markdown(filename: str, data: bytes) -> Extracted:
    # The Markdown stays as written: the chunker splits on its structure.
    text, encoding = decode_text(filename, data)
    return Extracted(title=markdown_title(text), text=text, metadata={"encoding": encoding})


_DROPPED_TAGS = ["script", "style", "nav", "head", "title", "noscript", "template", "svg"]
_BLOCK_TAGS = [
    *("p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "pre"),
    *("table", "tr", "figure", "figcaption", "form", "fieldset", "address", "hr"),
    *("details", "summary"),
]
# Private-use sentinels mark breaks while ordinary whitespace (HTML source layout) collapses.
_PARAGRAPH, _LINE = "\ue000", "\ue001"


def _tag_text(found: object) -> str | None:
    if not isinstance(found, Tag):
        return None
    return " ".join(found.get_text(" ").split()) or None


def extract_html(filename: str, data: bytes) -> Extracted:
    reject_binary(filename, data)
    try:
        # Bytes, not str: BeautifulSoup honours a BOM or <meta charset> before guessing.
        soup = BeautifulSoup(data, "html.parser")
    except ParserRejectedMarkup as exc:
        raise CorruptFile(filename, f"not valid HTML ({reason(exc)})") from exc
    title = _tag_text(soup.find("title")) or _tag_text(soup.find("h1"))
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    for pre in soup.find_all("pre"):
        for string in pre.find_all(string=True):
            string.replace_with(string.replace("\n", _LINE))
    for br in soup.find_all("br"):
        br.replace_with(_LINE)
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_PARAGRAPH)
        tag.insert_after(_PARAGRAPH)
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" ")
    text = re.sub(r"\s+", " ", soup.get_text())
    text = text.replace(_LINE, "\n").replace(_PARAGRAPH, "\n\n")
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r" *\n *", "\n", text))
    metadata = {"encoding": soup.original_encoding} if soup.original_encoding else {}
    return Extracted(title=title, text=text, metadata=metadata)


_BODY_FIELDS = ("text", "content", "body")


def extract_json(filename: str, data: bytes) -> Extracted:
    text, _ = decode_text(filename, data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise CorruptFile(filename, f"not valid JSON ({detail})") from exc
    except RecursionError as exc:
        raise CorruptFile(filename, "not valid JSON (nested too deeply)") from exc
    if not isinstance(value, dict):
        return Extracted(title=None, text="\n".join(flatten_json(value)))
    title = value.get("title")
    title = title.strip() or None if isinstance(title, str) else None
    body_field = next(
        (k for k in _BODY_FIELDS if isinstance(value.get(k), str) and value[k].strip()), None
    )
    if body_field is None:
        return Extracted(title=title, text="\n".join(flatten_json(value)))
    # A document-shaped object: its body is the text, other scalar fields become metadata.
    metadata = {
        str(key): _scalar(field)
        for key, field in value.items()
        if key not in ("title", body_field) and isinstance(field, str | int | float | bool)
    }
    return Extracted(title=title, text=value[body_field], metadata=metadata)


def _scalar(value: str | int | float | bool) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def flatten_json(value: object) -> list[str]:
    """Readable "path: value" lines, in document order; iterative so depth cannot overflow."""
    lines: list[str] = []
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            items = [(f"{path}.{key}" if path else str(key), v) for key, v in node.items()]
            stack.extend(reversed(items))
        elif isinstance(node, list):
            # Items of a top-level list stand alone: "[3]: text" would only add noise.
            stack.extend(
                reversed([(f"{path}[{i}]" if path else "", v) for i, v in enumerate(node)])
            )
        elif isinstance(node, str | int | float | bool):  # null carries nothing to search
            lines.append(f"{path}: {_scalar(node)}" if path else _scalar(node))
    return lines
