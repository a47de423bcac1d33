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


def matcher(terms: list[str]) -> re.Pattern[str] | None:
    """One pattern for every word of a text that matches a query term: the whole word
    for short terms, else any word sharing the term's stem (cheap stemming: "indexing"
    matches "indexed" through the shared "index"). One regex scan instead of comparing
    every word with every term in Python (a few milliseconds per result page)."""
    if not terms:
        return None
    alternatives = [
        re.escape(t[: max(MIN_PREFIX, len(t) - 3)]) + r"\w*"
        if len(t) >= MIN_PREFIX
        else re.escape(t) + r"(?!\w)"
        for t in sorted(set(terms), key=len, reverse=True)
    ]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + ")", re.IGNORECASE)


def snippets(texts: list[str], query: str, width: int = 300) -> list[str]:
    """`snippet` of each text, the query's pattern made once for the page."""
    pattern = matcher(query_terms(query))
    return [_window(text, pattern, width) for text in texts]


def snippet(text: str, query: str, width: int = 300) -> str:
    return _window(text, matcher(query_terms(query)), width)


def _window(text: str, pattern: re.Pattern[str] | None, width: int) -> str:
    # One line of prose: layout whitespace (tables, indentation) would waste the window.
    text = SPACES.sub(" ", text).strip()
    first = pattern.search(text) if pattern else None
    start = 0
    if first:
        start = max(0, first.start() - width // 4)
        # Begin at a word boundary so the window doesn't open mid-word.
        boundary = text.rfind(" ", 0, start)
        start = 0 if boundary < 0 or start == 0 else boundary + 1
    end = min(len(text), start + width)
    out: list[str] = ["…" if start > 0 else ""]
    cursor = start
    # Only the window is scanned for the rest (a chunk is several windows long); the
    # lookbehind still sees the character before `start`.
    for match in pattern.finditer(text, start) if first and pattern else ():
        if match.end() > end:
            break  # matches come in order: every later one ends past the window too
        out.append(html.escape(text[cursor : match.start()]))
        out.append(f"<mark>{html.escape(match.group())}</mark>")
        cursor = match.end()
    out.append(html.escape(text[cursor:end]))
    out.append("…" if end < len(text) else "")
    return "".join(out).strip()
