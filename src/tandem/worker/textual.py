"""Extractors for the text-based formats: plain text, code, Markdown, HTML and JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from bs4 import UnicodeDammit

from tandem.documents.parsed import CorruptFile, Extracted, text_language
from tandem.worker.decoding import decode_text, reject_binary
from tandem.worker.html_text import html_to_text
from tandem.worker.limits import ParseLimits, TextBudget, Upload


def extract_plain(upload: Upload) -> Extracted:
    text, encoding = decode_text(upload.filename, upload.data, upload.charset)
    return Extracted(title=None, text=text, metadata={"encoding": encoding})


def extract_code(upload: Upload) -> Extracted:
    # Kept as written, line breaks and indentation included: they are the structure.
    text, encoding = decode_text(upload.filename, upload.data, upload.charset)
    metadata = {"encoding": encoding}
    language = text_language(upload.filename, upload.content_type, upload.data[:256])
    if language:
        metadata["language"] = language
    return Extracted(title=None, text=text, metadata=metadata)


# The opening of an ATX heading; the rest of the line is taken apart in Python, since the
# one-pattern form (`#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$`) backtracks quadratically on a long
# line of spaces, holding the GIL for as long.
_ATX_H1 = re.compile(r" {0,3}#[ \t]")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_BLANK = " \t"


def atx_h1_text(line: str) -> str | None:
    """The text of a level-1 ATX heading line ("# Title #" -> "Title"), in linear time; the
    same as `^ {0,3}#[ \\t]+(.+?)(?:[ \\t]+#+)?[ \\t]*$` would capture."""
    opening = _ATX_H1.match(line)
    if opening is None:
        return None
    rest = line[opening.end() - 1 :]
    content = rest.lstrip(_BLANK)
    if not content:
        # Only blanks after the "#": the pattern captures the last of them, if it has two.
        return rest[-1] if len(rest) >= 2 else None
    body = content.rstrip(_BLANK)
    unclosed = body.rstrip("#")
    if unclosed != body and unclosed[-1:] in (" ", "\t"):  # a closing "#" sequence
        return unclosed.rstrip(_BLANK)
    return body


def markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading ("# Title") outside fenced code blocks."""
    fence: str | None = None
    for line in text.splitlines():
        opener = _FENCE.match(line)
        if opener:
            marker = opener.group(1)
            fence = None if fence == marker else fence or marker
            continue
        title = atx_h1_text(line) if fence is None else None
        if title is not None:
            return title
    return None


def extract_markdown(upload: Upload) -> Extracted:
    # The Markdown stays as written: the chunker splits on its structure.
    text, encoding = decode_text(upload.filename, upload.data, upload.charset)
    return Extracted(title=markdown_title(text), text=text, metadata={"encoding": encoding})


def extract_html(upload: Upload) -> Extracted:
    reject_binary(upload.filename, upload.data)
    # UnicodeDammit (BeautifulSoup's decoder) tries the declared charset first (a
    # Content-Type charset overrides <meta>, as in browsers), then a BOM or <meta charset>,
    # then a guess.
    known = [upload.charset] if upload.charset else []
    dammit = UnicodeDammit(upload.data, known_definite_encodings=known, is_html=True)
    markup = dammit.unicode_markup
    if markup is None:
        raise CorruptFile(upload.filename, "not valid HTML (its encoding could not be found)")
    title, text, truncated = html_to_text(markup, upload.limits.max_extracted_chars)
    metadata = {"encoding": dammit.original_encoding} if dammit.original_encoding else {}
    if truncated:
        metadata["truncated"] = "true"
    return Extracted(title=title, text=text, metadata=metadata)


_BODY_FIELDS = ("text", "content", "body")


def extract_json(upload: Upload) -> Extracted:
    filename, limits = upload.filename, upload.limits
    text, _ = decode_text(filename, upload.data, upload.charset)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise CorruptFile(filename, f"not valid JSON ({detail})") from exc
    except RecursionError as exc:
        # The C decoder counts its depth against the recursion limit and stops cleanly.
        raise CorruptFile(filename, "not valid JSON (nested too deeply)") from exc
    del text  # the decoded value can be large; the source text is no longer needed
    if not isinstance(value, dict):
        return _flattened(None, value, limits)
    title = value.get("title")
    title = title.strip() or None if isinstance(title, str) else None
    body_field = next(
        (k for k in _BODY_FIELDS if isinstance(value.get(k), str) and value[k].strip()), None
    )
    if body_field is None:
        return _flattened(title, value, limits)
    # A document-shaped object: its body is the text, other scalar fields become metadata.
    fields = [
        (str(key), _scalar(field))
        for key, field in value.items()
        if key not in ("title", body_field) and isinstance(field, str | int | float | bool)
    ]
    metadata = {
        key[: limits.max_field_chars]: field[: limits.max_field_chars]
        for key, field in fields[: limits.max_metadata_fields]
    }
    return Extracted(title=title, text=value[body_field], metadata=metadata)


def _flattened(title: str | None, value: object, limits: ParseLimits) -> Extracted:
    budget = TextBudget(limits.max_extracted_chars)
    for line in flatten_json(value, limits.max_json_path_chars):
        if not budget.add(line + "\n"):
            break
    return Extracted(title=title, text=budget.join(""), metadata=budget.note({}))


def _scalar(value: str | int | float | bool) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def flatten_json(value: object, max_path_chars: int = 200) -> Iterator[str]:
    """Readable "path: value" lines, in document order. Lazy, over a stack of iterators
    (memory grows with depth, not size, and depth cannot overflow the C stack), with each
    path cut to `max_path_chars`, so a long key over a long array costs no more than the
    lines the caller keeps."""
    stack: list[Iterator[tuple[str, object]]] = [iter([("", value)])]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path, node = entry
        if isinstance(node, dict):
            stack.append(_members(path, node, max_path_chars))
        elif isinstance(node, list):
            stack.append(_items(path, node, max_path_chars))
        elif isinstance(node, str | int | float | bool):  # null carries nothing to search
            yield f"{path}: {_scalar(node)}" if path else _scalar(node)


def _members(path: str, node: dict[object, object], cap: int) -> Iterator[tuple[str, object]]:
    for key, item in node.items():
        name = str(key)[:cap]
        yield (f"{path}.{name}" if path else name)[:cap], item


def _items(path: str, node: list[object], cap: int) -> Iterator[tuple[str, object]]:
    # Items of a top-level list stand alone: "[3]: text" would only add noise.
    for index, item in enumerate(node):
        yield (f"{path}[{index}]"[:cap] if path else ""), item
