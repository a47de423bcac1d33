"""HTML to text in one streaming pass: libxml2's HTML parser (through lxml) sends its
events to a collector, and no document tree is built.

The text is what BeautifulSoup's tree gave before (scripts, styles, navigation and the head
dropped, blocks separated by blank lines, <br> and <pre> line breaks kept, table cells
spaced), at a cost of memory for the text only. The tree of a million nested tags took
BeautifulSoup gigabytes and minutes (and tree walks risk the recursion limit); the stdlib's
HTMLParser, which BeautifulSoup used, backtracks super-linearly on unclosed tags (60 kB of
"<a " took over a minute). libxml2's tokenizer is linear and written in C.
"""

from __future__ import annotations

import re

from lxml import etree

from tandem.worker.limits import TextBudget

_DROPPED = frozenset(("script", "style", "nav", "head", "title", "noscript", "template", "svg"))
_BLOCKS = (
    frozenset(("p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote"))
    | frozenset(
        ("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "pre", "hr")
    )
    | frozenset(("table", "tr", "figure", "figcaption", "form", "fieldset", "address"))
    | frozenset(("details", "summary"))
)
_CELLS = frozenset(("td", "th"))
_HEADINGS = frozenset(("title", "h1"))
_SPECIAL = _DROPPED | _BLOCKS | _CELLS | _HEADINGS | {"br"}
# Private-use sentinels mark breaks while ordinary whitespace (HTML source layout) collapses.
_PARAGRAPH, _LINE = "\ue000", "\ue001"
# Fed in pieces, so that parsing stops soon after the text budget is spent.
_FEED_CHARS = 1 << 20
_HEADING_PARTS, _HEADING_CHARS = 100, 1000


def html_to_text(markup: str, max_chars: int) -> tuple[str | None, str, bool]:
    """(title, text, whether the text was cut at `max_chars`). The title is the first
    <title>'s text, else the first <h1>'s."""
    collector = _Collector()
    # huge_tree: no tree is built, and the collector keeps no more than a depth counter,
    # so libxml2's depth and size guards (meant for trees) would only refuse real pages.
    parser = etree.HTMLParser(target=collector, huge_tree=True, no_network=True)
    try:
        for start in range(0, len(markup), _FEED_CHARS):
            parser.feed(markup[start : start + _FEED_CHARS])
            if collector.size > max_chars:
                break
        parser.close()
    except etree.XMLSyntaxError:  # no markup at all ("Document is empty"): no text
        pass
    budget = TextBudget(max_chars)
    budget.add("".join(collector.parts))
    text = re.sub(r"\s+", " ", budget.join(""))
    text = text.replace(_LINE, "\n").replace(_PARAGRAPH, "\n\n")
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r" *\n *", "\n", text))
    title = collector.heading("title") or collector.heading("h1")
    return title, text, budget.truncated


class _Collector:
    """An lxml parser target: it hears each start tag, end tag and run of text."""

    def __init__(self) -> None:
        # The text so far: appended to, and measured, by the caller between pieces fed.
        self.parts: list[str] = []
        self.size = 0
        self._dropped = 0  # open elements whose content is left out
        self._pre = 0
        # The first <title> and <h1>: their text, and whether each is still open.
        self._headings: dict[str, list[str]] = {}
        self._open_headings: dict[str, int] = {}

    def heading(self, tag: str) -> str | None:
        return " ".join("".join(self._headings.get(tag, [])).split()) or None

    # lxml's target interface; fed a str, it calls back with str (the bytes in the stub's
    # signatures are for bytes input).
    def start(self, tag: str | bytes, attrib: dict[str | bytes, str | bytes]) -> None:
        if self._open_headings:  # words of separate elements stay apart: "Main <em>Topic"
            self._heading_text(" ")
        if tag not in _SPECIAL:  # most tags (spans, links, emphasis) change nothing
            return
        if tag in self._open_headings:
            self._open_headings[tag] += 1
        elif tag in _HEADINGS and tag not in self._headings:
            self._headings[tag] = []
            self._open_headings[tag] = 1
        if tag in _BLOCKS:
            self._emit(_PARAGRAPH)
        elif tag == "br":
            self._emit(_LINE)
        self._dropped += tag in _DROPPED
        self._pre += tag == "pre"

    def end(self, tag: str | bytes) -> None:
        if self._open_headings:
            self._heading_text(" ")
        if tag not in _SPECIAL:
            return
        self._dropped -= tag in _DROPPED
        self._pre -= tag == "pre"
        if tag in self._open_headings:
            self._open_headings[tag] -= 1
            if not self._open_headings[tag]:
                del self._open_headings[tag]
        if tag in _BLOCKS:
            self._emit(_PARAGRAPH)
        elif tag in _CELLS:
            self._emit(" ")

    def data(self, data: str | bytes) -> None:
        data = data if isinstance(data, str) else data.decode()
        if self._open_headings:
            self._heading_text(data)
        if self._pre:
            data = data.replace("\n", _LINE)
        self._emit(data)

    def comment(self, text: str | bytes) -> None:
        return None

    def close(self) -> None:
        return None

    def _heading_text(self, text: str) -> None:
        for heading in self._open_headings:
            parts = self._headings[heading]
            if len(parts) < _HEADING_PARTS:  # a title is cut to 200 characters anyway
                parts.append(text[:_HEADING_CHARS])

    def _emit(self, text: str) -> None:
        if not self._dropped:
            self.parts.append(text)
            self.size += len(text)
