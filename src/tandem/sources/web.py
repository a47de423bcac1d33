"""A web site as a document source: a polite breadth-first crawl of the pages under a start
URL that reports, page by page, what changed since the last crawl.

The scope is the start URL's scheme, host, port and directory (web_scope.Scope). robots.txt
is read first: when it cannot be (5xx, 429, network error), crawl() raises SiteUnavailable
before yielding anything, since nothing may then be taken as gone. Sitemaps add starting
points. Each page is asked for with the validators the last crawl recorded (conditional
GET), so an unchanged page costs a 304 and its recorded links carry the crawl on.

What each URL becomes: "changed" (200: the body, and for HTML its links and title),
"unchanged" (304), "gone" (404, 410) or "failed" (any other status, a network error, a
timeout, a body over the limit, a redirect out of the scope or in a loop). A failed page
keeps its recorded links (and the crawl goes on through them) so that one bad answer does
not make the pages behind it look gone. Not reported at all: URLs robots.txt disallows,
pages marked noindex (their links are still followed unless nofollow), images, audio,
video, fonts, archives, scripts and stylesheets (their Content-Type is seen on the GET,
the body is not read), and a URL whose redirect lands on a page already crawled. A
redirected page is reported under the URL it landed on."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import httpx

from tandem.sources.web_fetch import Fetcher, FetchFailed, RateLimit, Reply
from tandem.sources.web_html import is_html, media_type, read_html, robots_directives
from tandem.sources.web_robots import SiteRules, SiteUnavailable, read_robots, sitemap_pages
from tandem.sources.web_scope import Scope, normalise_url

__all__ = ["CrawlLimits", "Page", "PreviousPage", "SiteUnavailable", "WebCrawler"]

_REDIRECTS = (301, 302, 303, 307, 308)
_SKIPPED_PREFIXES = ("image/", "video/", "audio/", "font/")
_SKIPPED_TYPES = frozenset(
    {
        *("application/zip", "application/octet-stream", "application/gzip"),
        *("application/x-gzip", "application/x-tar", "application/x-7z-compressed"),
        *("application/vnd.rar", "application/wasm", "application/java-archive"),
        *("text/css", "text/javascript", "application/javascript"),
    }
)


@dataclass(frozen=True)
class PreviousPage:
    """What the last crawl recorded for a URL."""

    version: str  # Page.version: the server's ETag and Last-Modified, as JSON
    links: tuple[str, ...]


@dataclass(frozen=True)
class CrawlLimits:
    max_pages: int = 1000  # URLs requested (robots.txt and sitemaps not counted)
    max_depth: int = 10  # links from the start URL; sitemap URLs are starting points too
    requests_per_second: float = 10.0  # robots.txt's Crawl-delay slows this further
    timeout_seconds: float = 20.0  # for a whole request, body included
    max_bytes: int = 20 * 1024 * 1024
    user_agent: str = "TandemBot/0.1 (+self-hosted search)"
    max_redirects: int = 10

    def __post_init__(self) -> None:
        if min(self.max_pages, self.requests_per_second, self.timeout_seconds) <= 0:
            raise ValueError("max_pages, requests_per_second and timeout_seconds must be > 0")
        if min(self.max_depth, self.max_bytes, self.max_redirects) < 0:
            raise ValueError("max_depth, max_bytes and max_redirects must not be negative")


@dataclass(frozen=True)
class Page:
    url: str
    status: Literal["changed", "unchanged", "gone", "failed"]
    body: bytes | None  # only for "changed"
    content_type: str | None  # the Content-Type header, for "changed"
    version: str  # for "changed" and "unchanged"; a failed page keeps the recorded one
    # In-scope links, what PreviousPage.links should record: an unchanged or failed page
    # gives back the recorded ones.
    links: tuple[str, ...]
    title: str | None  # the HTML <title>, for "changed" (unchanged: keep the recorded one)
    error: str | None  # for "failed"


class WebCrawler:
    def __init__(
        self,
        start_url: str,
        limits: CrawlLimits = CrawlLimits(),
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        start = normalise_url(start_url)
        if start is None:
            raise ValueError(f"not an http(s) URL: {start_url!r}")
        self.start_url = start
        self.scope = Scope.of(start)
        self.limits = limits
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._agent = limits.user_agent.split("/", 1)[0].strip()
        self._truncated = True

    @property
    def truncated(self) -> bool:
        """True unless the last crawl ran to its end within max_pages and max_depth: the
        pages it did not report may still be there, so none may be taken as gone."""
        return self._truncated

    def crawl(self, previous: Mapping[str, PreviousPage]) -> Iterator[Page]:
        """The pages of the site (see the module); raises SiteUnavailable first when
        robots.txt cannot be read."""
        self._truncated = True
        with ExitStack() as stack:
            client = self._client or stack.enter_context(httpx.Client())
            rate = RateLimit(1 / self.limits.requests_per_second, self._clock, self._sleep)
            fetcher = Fetcher(client, rate, self.limits.user_agent, self.limits.timeout_seconds)
            rules = read_robots(fetcher, self.scope.origin, self._agent)
            rate.interval = max(rate.interval, rules.crawl_delay)
            run = _Crawl(self.start_url, self.scope, self.limits, fetcher, rules, previous)
            yield from run.pages()
            self._truncated = run.cut_short


class _Crawl:
    def __init__(
        self,
        start_url: str,
        scope: Scope,
        limits: CrawlLimits,
        fetcher: Fetcher,
        rules: SiteRules,
        previous: Mapping[str, PreviousPage],
    ) -> None:
        self.start_url, self.scope, self.limits = start_url, scope, limits
        self.fetcher, self.rules, self.previous = fetcher, rules, previous
        self.agent = rules.agent
        self.known: set[str] = set()  # queued or requested: no URL is asked for twice
        self.queue: deque[tuple[str, int]] = deque()
        self.cut_short = False

    def pages(self) -> Iterator[Page]:
        self._enqueue([self.start_url], 0)
        # One more than can be crawled is enough to show that the crawl will be cut short.
        sitemap = sitemap_pages(
            self.fetcher,
            self.rules,
            self.scope,
            max_urls=self.limits.max_pages + 1,
            max_bytes=self.limits.max_bytes,
        )
        self._enqueue(sitemap, 0)
        requested = 0
        while self.queue:
            if requested == self.limits.max_pages:
                self.cut_short = True
                return
            url, depth = self.queue.popleft()
            requested += 1
            page, links = self._visit(url)
            if page is not None:
                yield page
            self._enqueue(links, depth + 1)

    def _enqueue(self, urls: Iterable[str], depth: int) -> None:
        for url in urls:
            if url in self.known or not self.scope.contains(url) or not self.rules.allows(url):
                continue
            if depth > self.limits.max_depth:
                self.cut_short = True
                continue
            self.known.add(url)
            self.queue.append((url, depth))

    def _visit(self, url: str) -> tuple[Page | None, tuple[str, ...]]:
        """The page the URL leads to (None: nothing to report) and the links to follow."""
        chain = [url]
        for _ in range(self.limits.max_redirects + 1):
            recorded = self.previous.get(url)
            try:
                reply = self.fetcher.get(
                    url,
                    headers=_conditional_headers(recorded),
                    wants_body=_wanted,
                    max_bytes=self.limits.max_bytes,
                )
            except FetchFailed as exc:
                return self._failed(url, str(exc))
            if reply.status not in _REDIRECTS:
                return self._answered(url, reply, recorded)
            location = reply.headers.get("location")
            if not location:
                return self._failed(url, f"HTTP {reply.status} without a Location")
            target = normalise_url(location, base=url)
            if target is None or not self.scope.contains(target):
                return self._failed(url, f"redirected out of the source's scope, to {location}")
            if target in chain:
                return self._failed(url, "redirect loop")
            if target in self.known or not self.rules.allows(target):
                return None, ()  # crawled (or to be) under that URL, or not ours to crawl
            self.known.add(target)
            chain.append(target)
            url = target
        return self._failed(url, f"more than {self.limits.max_redirects} redirects")

    def _answered(
        self, url: str, reply: Reply, recorded: PreviousPage | None
    ) -> tuple[Page | None, tuple[str, ...]]:
        if reply.status == 304 and recorded is not None:
            version = _version(reply.headers, recorded.version)
            page = Page(url, "unchanged", None, None, version, recorded.links, None, None)
            return page, recorded.links
        if reply.status in (404, 410):
            return Page(url, "gone", None, None, "", (), None, None), ()
        if reply.status not in (200, 203):
            return self._failed(url, f"HTTP {reply.status}")
        if reply.body is None:
            return None, ()  # an image or other binary: its body was not read
        directives = robots_directives(reply.headers.get_list("x-robots-tag"), self.agent)
        links: tuple[str, ...] = ()
        title = None
        index = "noindex" not in directives and "none" not in directives
        if is_html(reply.content_type):
            reading = read_html(reply.body, url, self.agent, directives)
            links = tuple(link for link in reading.links if self.scope.contains(link))
            title, index = reading.title, reading.index
        if not index:
            return None, links
        version = _version(reply.headers, None)
        return Page(
            url, "changed", reply.body, reply.content_type, version, links, title, None
        ), links

    def _failed(self, url: str, error: str) -> tuple[Page, tuple[str, ...]]:
        recorded = self.previous.get(url)
        version, links = (recorded.version, recorded.links) if recorded else ("", ())
        return Page(url, "failed", None, None, version, links, None, error), links


def _wanted(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return not (kind.startswith(_SKIPPED_PREFIXES) or kind in _SKIPPED_TYPES)


def _conditional_headers(recorded: PreviousPage | None) -> dict[str, str]:
    validators = _validators(recorded.version) if recorded else {}
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = validators["etag"]
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = validators["last_modified"]
    return headers


def _validators(version: str) -> dict[str, str]:
    try:
        loaded = json.loads(version)
    except ValueError:
        return {}  # recorded by something else, or empty: ask unconditionally
    if not isinstance(loaded, dict):
        return {}
    return {key: value for key, value in loaded.items() if isinstance(value, str)}


def _version(headers: httpx.Headers, recorded: str | None) -> str:
    """The validators as JSON; a 304 may leave some out, which then stay as recorded."""
    kept = _validators(recorded) if recorded else {}
    etag = headers.get("etag") or kept.get("etag")
    last_modified = headers.get("last-modified") or kept.get("last_modified")
    return json.dumps({"etag": etag, "last_modified": last_modified}, sort_keys=True)
