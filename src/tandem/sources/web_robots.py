"""What a site says about crawling it: robots.txt (RFC 9309, read by urllib.robotparser)
and the page URLs its sitemaps list."""

from __future__ import annotations

import contextlib
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser
from xml.parsers import expat

from tandem.sources.web_fetch import Fetcher, FetchFailed
from tandem.sources.web_scope import Scope, normalise_url

# RFC 9309 asks crawlers to read at least 500 KiB of a robots.txt; the rest may be dropped.
_ROBOTS_MAX_BYTES = 512 * 1024
_ROBOTS_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
# Seconds between requests, whatever robots.txt asks: a day's delay would hold a worker
# for years on a large site; the source's own requests_per_second can still go slower.
_MAX_CRAWL_DELAY = 30.0
# Sitemap index files name further sitemaps: at most this many are read per crawl.
_MAX_SITEMAPS = 20


class SiteUnavailable(Exception):
    """robots.txt could not be read (a 5xx or 429 answer, a network error or a timeout):
    RFC 9309 says to crawl nothing then, and nothing may be taken as gone from the site."""


@dataclass(frozen=True)
class SiteRules:
    parser: RobotFileParser | None  # None: no robots.txt (a 4xx answer), everything allowed
    agent: str  # the product token robots.txt groups are matched on, e.g. "TandemBot"

    def allows(self, url: str) -> bool:
        return self.parser is None or self.parser.can_fetch(self.agent, url)

    @property
    def sitemaps(self) -> list[str]:
        return (self.parser.site_maps() if self.parser else None) or []

    @property
    def crawl_delay(self) -> float:
        """Crawl-delay, in seconds, at most _MAX_CRAWL_DELAY."""
        delay = self.parser.crawl_delay(self.agent) if self.parser else None
        return min(float(delay), _MAX_CRAWL_DELAY) if delay else 0.0


def read_robots(fetcher: Fetcher, origin: str, agent: str) -> SiteRules:
    url = f"{origin}/robots.txt"
    for _ in range(_ROBOTS_MAX_REDIRECTS + 1):
        try:
            reply = fetcher.get(url, max_bytes=_ROBOTS_MAX_BYTES, cut_at_limit=True)
        except FetchFailed as exc:
            raise SiteUnavailable(f"{url}: {exc}") from exc
        if reply.status in _REDIRECTS:
            # Any host: a robots.txt moved elsewhere (www. to the bare domain) still holds.
            target = normalise_url(reply.headers.get("location", ""), base=url)
            if target is None or target == url:
                break
            url = target
            continue
        if reply.status == 429 or reply.status >= 500:
            raise SiteUnavailable(f"{url} answered HTTP {reply.status}: crawling nothing")
        if reply.status >= 400 or reply.body is None:
            return SiteRules(None, agent)
        text = reply.body.decode("utf-8", errors="replace")
        if len(reply.body) == _ROBOTS_MAX_BYTES:
            text = text[: text.rfind("\n") + 1]  # cut mid-line: drop the partial rule
        parser = RobotFileParser(url)
        parser.parse(text.splitlines())
        return SiteRules(parser, agent)
    # RFC 9309: a robots.txt behind too many (or broken) redirects is "unavailable", as
    # with a 4xx answer: there are no rules.
    return SiteRules(None, agent)


def sitemap_pages(
    fetcher: Fetcher, rules: SiteRules, scope: Scope, *, max_urls: int, max_bytes: int
) -> list[str]:
    """The first `max_urls` page URLs in the scope (normalised, each once) that the site's
    sitemaps list: those robots.txt names on this origin, else /sitemap.xml. A sitemap
    that is missing, too large or not valid XML adds nothing: sitemaps only add starting
    points to the crawl."""
    origin = scope.origin
    named = [url for url in map(normalise_url, rules.sitemaps) if url and _on(origin, url)]
    default = f"{origin}/sitemap.xml"
    pending = deque(named or ([default] if rules.allows(default) else []))
    read: set[str] = set()
    pages: dict[str, None] = {}  # a dict keeps the sitemaps' order
    while pending and len(read) < _MAX_SITEMAPS and len(pages) < max_urls:
        url = pending.popleft()
        if url in read:
            continue
        read.add(url)
        try:
            reply = fetcher.get(url, max_bytes=max_bytes)
        except FetchFailed:
            continue
        if reply.status != 200 or reply.body is None:
            continue
        page_locations, sitemap_locations = parse_sitemap(_gunzip(reply.body, max_bytes))
        for location in page_locations:
            page = normalise_url(location)
            if page and scope.contains(page) and len(pages) < max_urls:
                pages[page] = None
        for location in sitemap_locations:
            nested = normalise_url(location)
            if nested and _on(origin, nested):
                pending.append(nested)
    return list(pages)


def _on(origin: str, url: str) -> bool:
    return url.startswith(f"{origin}/")


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    # A sitemap.xml.gz served as a file, not as Content-Encoding (which httpx undoes).
    if not data.startswith(b"\x1f\x8b"):
        return data
    try:
        inflated = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, max_bytes + 1)
    except zlib.error:
        return b""
    return inflated if len(inflated) <= max_bytes else b""


class _UnsafeXml(ValueError):
    pass


def parse_sitemap(data: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, sitemap URLs) of a sitemap or sitemap index, as written in <loc>.

    A document type declaration is refused: without one no entity can expand, so the
    parse is bounded by the (already bounded) size of the data. What was read before an
    error is kept."""
    pages: list[str] = []
    sitemaps: list[str] = []
    open_elements: list[str] = []
    text: list[str] = []

    def start(name: str, _attributes: dict[str, str]) -> None:
        open_elements.append(name.rsplit(" ", 1)[-1])  # the name without its namespace
        text.clear()

    def end(_name: str) -> None:
        element = open_elements.pop()
        if element == "loc" and open_elements:
            found = {"url": pages, "sitemap": sitemaps}.get(open_elements[-1])
            if found is not None:
                found.append("".join(text).strip())

    def characters(data: str) -> None:
        if open_elements and open_elements[-1] == "loc":
            text.append(data)

    def refuse(*_: object) -> None:
        raise _UnsafeXml("a document type declaration")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    with contextlib.suppress(expat.ExpatError, _UnsafeXml):
        parser.Parse(data, True)
    return pages, sitemaps
