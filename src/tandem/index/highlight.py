"""Search snippets: a window of the chunk around the query's words, HTML-escaped, with the
matched words wrapped in <mark>. Done in Python so snippets are safe to render as HTML."""

from __future__ import annotations

import html
import re

WORD = re.compile(r"\w+", re.UNICODE)
SPACES = re.compile(r"\s+")
# Short words and the commonest English function words mark nothing useful.
STOP = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "i", "in", "is"}
    | {"it", "of", "on", "or", "the", "to", "what", "with"}
)
MIN_PREFIX = 4


def query_terms(query: str) -> list[str]:
    return [w for w in (m.group().lower() for m in WORD.finditer(query)) if w not in STOP]


def _matches(word: str, terms: list[str]) -> bool:
    lowered = word.lower()
    for term in terms:
        if lowered == term:
            return True
        # Cheap stemming: "indexing" matches "indexed" through the shared "index".
        stem = term[: max(MIN_PREFIX, len(term) - 3)]
        if len(term) >= MIN_PREFIX and lowered.startswith(stem):
            return True
    return False


def snippet(text: str, query: str, width: int = 300) -> str:
    # One line of prose: layout whitespace (tables, indentation) would waste the window.
    text = SPACES.sub(" ", text).strip()
    terms = query_terms(query)
    words = list(WORD.finditer(text))
    hits = [m for m in words if terms and _matches(m.group(), terms)]
    start = 0
    if hits:
        start = max(0, hits[0].start() - width // 4)
        # Begin at a word boundary so the window doesn't open mid-word.
        boundary = text.rfind(" ", 0, start)
        start = 0 if boundary < 0 or start == 0 else boundary + 1
    end = min(len(text), start + width)
    out: list[str] = ["…" if start > 0 else ""]
    cursor = start
    for match in hits:
        if match.start() < start or match.end() > end:
            continue
        out.append(html.escape(text[cursor : match.start()]))
        out.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    out.append(html.escape(text[cursor:end]))
    out.append("…" if end < len(text) else "")
    return "".join(out).strip()
