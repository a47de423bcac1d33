"""The web crawler against a real HTTP server on 127.0.0.1: scope, robots.txt, sitemaps,
redirects, assets, limits, pacing, and conditional GETs on the second crawl."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tandem.sources.web import CrawlLimits, Page, PreviousPage, SiteUnavailable, WebCrawler
from tandem.sources.web_html import robots_directives
from tandem.sources.web_robots import parse_sitemap
from tandem.sources.web_scope import Scope, normalise_url
from tests.source_site import Resource, Site, html, running_site


@dataclass
class FakeClock:
    """Time that passes only when the crawler sleeps: pacing without waiting."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def site() -> Iterator[Site]:
    with running_site() as running:
        yield running


def crawl(
    site: Site,
    start: str = "/docs/",
    previous: dict[str, PreviousPage] | None = None,
    limits: CrawlLimits = CrawlLimits(),
) -> tuple[dict[str, Page], WebCrawler]:
    """The pages by path (checking each URL comes once) and the crawler, for `truncated`."""
    clock = FakeClock()
    crawler = WebCrawler(site.url(start), limits, clock=clock, sleep=clock.sleep)
    pages = list(crawler.crawl(previous or {}))
    by_path = {page.url.removeprefix(site.base_url): page for page in pages}
    assert len(by_path) == len(pages), [page.url for page in pages]
    return by_path, crawler


def recorded(pages: dict[str, Page]) -> dict[str, PreviousPage]:
    """What a sync would store after a crawl, for the next one."""
    return {page.url: PreviousPage(page.version, page.links) for page in pages.values()}


def test_the_crawl_stays_in_the_start_directory_and_reads_links_and_titles(site: Site) -> None:
    site.resources["/docs/index.html"] = html(
        title="  Docs\n home ",
        links=(
            "a.html",
            "a.html#part",
            "./sub/../b.html",
            "/docs2/elsewhere.html",
            "/doc.html",
            "../outside.html",
            "http://example.invalid/docs/x.html",
            "mailto:someone@example.invalid",
            "javascript:void(0)",
        ),
        head='<link rel="next" href="c.html"><link rel="stylesheet" href="style.css">'
        '<meta name="description" content="nofollow">',
    )
    site.resources["/docs/a.html"] = html(title="A")
    site.resources["/docs/b.html"] = html(links=("hidden.html",), rel="external nofollow")
    site.resources["/docs/c.html"] = html()
    pages, crawler = crawl(site, "/docs/index.html")
    # In document order: the <link rel=next> in the head comes first.
    assert list(pages) == ["/docs/index.html", "/docs/c.html", "/docs/a.html", "/docs/b.html"]
    home = pages["/docs/index.html"]
    assert (home.status, home.title, home.content_type) == (
        "changed",
        "Docs home",
        "text/html; charset=utf-8",
    )
    assert home.body == site.resources["/docs/index.html"].body
    assert home.links == tuple(site.url(f"/docs/{name}") for name in ("c.html", "a.html", "b.html"))
    assert pages["/docs/b.html"].links == ()
    assert not crawler.truncated
    assert site.paths() == [
        "/robots.txt",
        "/sitemap.xml",
        *pages,
    ]  # nothing outside /docs/, nothing twice


def test_robots_txt_disallows_and_names_the_sitemap(site: Site) -> None:
    site.resources["/robots.txt"] = Resource(
        f"User-agent: otherbot\nDisallow: /\n\nUser-agent: *\nDisallow: /docs/private/\n"
        f"Sitemap: {site.url('/maps/pages.xml')}\n".encode(),
        content_type="text/plain",
    )
    site.resources["/maps/pages.xml"] = Resource(
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + f"<sitemap><loc>{site.url('/maps/more.xml')}</loc></sitemap></sitemapindex>".encode(),
        content_type="application/xml",
    )
    site.resources["/maps/more.xml"] = Resource(
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(
            f"<url><loc> {site.url(path)} </loc></url>"
            for path in ("/docs/orphan.html", "/docs/private/secret.html", "/blog/post.html")
        ).encode()
        + b"</urlset>",
        content_type="application/xml",
    )
    site.resources["/docs/"] = html(links=("private/linked.html",))
    site.resources["/docs/orphan.html"] = html(title="Only in the sitemap")
    pages, _ = crawl(site)
    assert list(pages) == ["/docs/", "/docs/orphan.html"]
    assert site.paths() == [
        "/robots.txt",
        "/maps/pages.xml",
        "/maps/more.xml",
        "/docs/",
        "/docs/orphan.html",
    ]


def test_without_robots_txt_the_default_sitemap_is_read_even_gzipped(site: Site) -> None:
    site.resources["/sitemap.xml"] = Resource(
        f"<sitemapindex><sitemap><loc>{site.url('/pages.xml.gz')}</loc></sitemap>"
        "</sitemapindex>".encode(),
        content_type="application/xml",
    )
    urls = "".join(f"<url><loc>{site.url(f'/docs/{n}.html')}</loc></url>" for n in range(3))
    site.resources["/pages.xml.gz"] = Resource(
        gzip.compress(f"<urlset>{urls}</urlset>".encode()), content_type="application/gzip"
    )
    site.resources["/docs/"] = html()
    for n in range(3):
        site.resources[f"/docs/{n}.html"] = html()
    pages, crawler = crawl(site)
    assert list(pages) == ["/docs/", "/docs/0.html", "/docs/1.html", "/docs/2.html"]
    assert not crawler.truncated
    _, crawler = crawl(site, limits=CrawlLimits(max_pages=3))
    assert crawler.truncated


def test_a_moved_robots_txt_is_followed(site: Site) -> None:
    site.redirect("/robots.txt", "/rules/robots.txt")
    site.resources["/rules/robots.txt"] = Resource(
        b"User-agent: TandemBot\nDisallow: /docs/drafts/\n", content_type="text/plain"
    )
    site.resources["/docs/"] = html(links=("drafts/a.html", "final.html"))
    site.resources["/docs/final.html"] = html()
    pages, _ = crawl(site)
    assert list(pages) == ["/docs/", "/docs/final.html"]
    assert "/docs/drafts/a.html" not in site.paths()


def test_a_robots_txt_server_error_crawls_nothing(site: Site) -> None:
    site.resources["/robots.txt"] = Resource(b"busy", status=503)
    site.resources["/docs/"] = html()
    crawler = WebCrawler(site.url("/docs/"))
    with pytest.raises(SiteUnavailable, match="HTTP 503"):
        next(crawler.crawl({}))
    assert crawler.truncated  # nothing may be taken as gone
    assert site.paths() == ["/robots.txt"]


def test_redirects_inside_the_scope_report_where_they_land_once(site: Site) -> None:
    site.resources["/docs/"] = html(links=("old.html", "new.html", "older.html"))
    site.redirect("/docs/old.html", "/docs/new.html")
    site.redirect("/docs/older.html", site.url("/docs/old.html"), status=308)
    site.resources["/docs/new.html"] = html(title="New")
    pages, _ = crawl(site)
    assert list(pages) == ["/docs/", "/docs/new.html"]
    assert len(site.requested("/docs/new.html")) == 1
    assert len(site.requested("/docs/old.html")) == 1


def test_redirects_out_of_the_scope_or_in_a_loop_fail_and_are_not_followed(site: Site) -> None:
    site.resources["/docs/"] = html(links=("away.html", "abroad.html", "lost.html", "ping.html"))
    site.redirect("/docs/away.html", "/elsewhere.html", status=302)
    site.redirect("/docs/abroad.html", "http://example.invalid/docs/")
    site.resources["/docs/lost.html"] = Resource(status=302)
    site.redirect("/docs/ping.html", "/docs/pong.html")
    site.redirect("/docs/pong.html", "/docs/ping.html")
    site.resources["/elsewhere.html"] = html()
    pages, _ = crawl(site)
    away, abroad = pages["/docs/away.html"], pages["/docs/abroad.html"]
    assert (away.status, away.error) == (
        "failed",
        "redirected out of the source's scope, to /elsewhere.html",
    )
    assert abroad.status == "failed"
    assert (pages["/docs/pong.html"].status, pages["/docs/pong.html"].error) == (
        "failed",
        "redirect loop",
    )
    assert pages["/docs/lost.html"].error == "HTTP 302 without a Location"
    assert "/elsewhere.html" not in site.paths()


def test_link_loops_and_missing_pages(site: Site) -> None:
    site.resources["/docs/"] = html(links=("a.html", "missing.html", "broken.html"))
    site.resources["/docs/a.html"] = html(links=("/docs/", "a.html", "b.html"))
    site.resources["/docs/b.html"] = html(links=("a.html", "./"))
    site.resources["/docs/broken.html"] = Resource(b"oops", status=500)
    pages, _ = crawl(site)
    assert {path: page.status for path, page in pages.items()} == {
        "/docs/": "changed",
        "/docs/a.html": "changed",
        "/docs/missing.html": "gone",
        "/docs/broken.html": "failed",
        "/docs/b.html": "changed",
    }
    assert pages["/docs/broken.html"].error == "HTTP 500"
    assert sorted(site.paths()) == sorted(["/robots.txt", "/sitemap.xml", *pages])


def test_documents_are_kept_and_binaries_skipped_unread(site: Site) -> None:
    site.resources["/docs/"] = html(
        links=("guide.pdf", "notes.txt", "logo", "hidden.pdf", "other.html")
    )
    site.resources["/docs/other.html"] = html(links=("logo",))
    site.resources["/docs/guide.pdf"] = Resource(b"%PDF-1.4 ...", content_type="application/pdf")
    site.resources["/docs/notes.txt"] = Resource(
        b'see <a href="x.html">', content_type="text/plain"
    )
    # Larger than the limit: had its body been read, the crawl would report it failed.
    site.resources["/docs/logo"] = Resource(b"\x89PNG" * 500_000, content_type="image/png")
    site.resources["/docs/hidden.pdf"] = Resource(
        b"%PDF", content_type="application/pdf", headers={"X-Robots-Tag": "noindex"}
    )
    pages, _ = crawl(site, limits=CrawlLimits(max_bytes=100_000))
    assert list(pages) == ["/docs/", "/docs/guide.pdf", "/docs/notes.txt", "/docs/other.html"]
    pdf, text = pages["/docs/guide.pdf"], pages["/docs/notes.txt"]
    assert (pdf.status, pdf.body, pdf.content_type) == (
        "changed",
        b"%PDF-1.4 ...",
        "application/pdf",
    )
    assert (text.body, text.links) == (b'see <a href="x.html">', ())
    assert len(site.requested("/docs/logo")) == 1
    assert "/docs/x.html" not in site.paths()


def test_noindex_pages_are_not_reported_and_nofollow_pages_lead_nowhere(site: Site) -> None:
    site.resources["/docs/"] = html(links=("hub.html", "end.html"))
    site.resources["/docs/hub.html"] = html(
        links=("behind.html",), head='<meta name="robots" content="noindex">'
    )
    site.resources["/docs/end.html"] = html(
        links=("beyond.html",), head='<meta name="TandemBot" content="nofollow">'
    )
    site.resources["/docs/behind.html"] = html()
    site.resources["/docs/beyond.html"] = html()
    pages, _ = crawl(site)
    assert list(pages) == ["/docs/", "/docs/end.html", "/docs/behind.html"]
    assert "/docs/beyond.html" not in site.paths()


def test_max_pages_cuts_the_crawl_short(site: Site) -> None:
    site.resources["/docs/"] = html(links=tuple(f"{n}.html" for n in range(5)))
    for n in range(5):
        site.resources[f"/docs/{n}.html"] = html()
    pages, crawler = crawl(site, limits=CrawlLimits(max_pages=3))
    assert list(pages) == ["/docs/", "/docs/0.html", "/docs/1.html"]
    assert crawler.truncated
    pages, crawler = crawl(site, limits=CrawlLimits(max_pages=6))
    assert len(pages) == 6
    assert not crawler.truncated


def test_max_depth_stops_following_links(site: Site) -> None:
    site.resources["/docs/"] = html(links=("1.html",))
    site.resources["/docs/1.html"] = html(links=("2.html",))
    site.resources["/docs/2.html"] = html(links=("3.html", "/docs/"))
    site.resources["/docs/3.html"] = html(links=("1.html",))
    pages, crawler = crawl(site, limits=CrawlLimits(max_depth=2))
    assert list(pages) == ["/docs/", "/docs/1.html", "/docs/2.html"]
    assert crawler.truncated
    pages, crawler = crawl(site, limits=CrawlLimits(max_depth=3))
    assert len(pages) == 4
    assert not crawler.truncated


@pytest.mark.parametrize(("robots", "spacing"), [("", 0.25), ("Crawl-delay: 2\n", 2.0)])
def test_requests_are_paced(site: Site, robots: str, spacing: float) -> None:
    site.resources["/robots.txt"] = Resource(
        f"User-agent: *\n{robots}Disallow:\n".encode(), content_type="text/plain"
    )
    site.resources["/docs/"] = html(links=("a.html", "b.html"))
    site.resources["/docs/a.html"] = html()
    site.resources["/docs/b.html"] = html()
    clock = FakeClock()
    starts: list[float] = []
    client = httpx.Client(event_hooks={"request": [lambda _: starts.append(clock())]})
    crawler = WebCrawler(
        site.url("/docs/"),
        CrawlLimits(requests_per_second=4),
        client,
        clock=clock,
        sleep=clock.sleep,
    )
    with client:
        assert len(list(crawler.crawl({}))) == 3
    assert len(starts) == 5  # robots.txt, sitemap.xml, three pages
    assert starts[1] == pytest.approx(0.25)  # robots.txt is read at the plain pace
    assert [b - a for a, b in itertools.pairwise(starts[1:])] == pytest.approx([spacing] * 3)


def test_the_second_crawl_asks_conditionally_and_transfers_only_changes(site: Site) -> None:
    site.resources["/docs/"] = html(links=("same.html", "edited.html", "dated.html", "doomed.html"))
    site.resources["/docs/"].etag = '"home-1"'
    site.resources["/docs/same.html"] = html(title="Same", links=("deep.html",))
    site.resources["/docs/same.html"].etag = '"same-1"'
    site.resources["/docs/deep.html"] = html()
    site.resources["/docs/deep.html"].etag = '"deep-1"'
    site.resources["/docs/edited.html"] = html(title="First")
    site.resources["/docs/edited.html"].etag = '"edited-1"'
    site.resources["/docs/dated.html"] = html()
    site.resources["/docs/dated.html"].last_modified = "Tue, 01 Jul 2025 10:00:00 GMT"
    site.resources["/docs/doomed.html"] = html()
    first, _ = crawl(site)
    assert {page.status for page in first.values()} == {"changed"}
    assert first["/docs/dated.html"].version == (
        '{"etag": null, "last_modified": "Tue, 01 Jul 2025 10:00:00 GMT"}'
    )

    site.resources["/docs/edited.html"] = html(title="Second")
    site.resources["/docs/edited.html"].etag = '"edited-2"'
    del site.resources["/docs/doomed.html"]
    site.forget_requests()
    second, crawler = crawl(site, previous=recorded(first))
    assert {path: page.status for path, page in second.items()} == {
        "/docs/": "unchanged",
        "/docs/same.html": "unchanged",
        "/docs/edited.html": "changed",
        "/docs/dated.html": "unchanged",
        "/docs/doomed.html": "gone",
        "/docs/deep.html": "unchanged",  # reached through same.html's recorded links
    }
    assert not crawler.truncated
    assert second["/docs/same.html"].links == first["/docs/same.html"].links
    assert second["/docs/edited.html"].title == "Second"
    assert site.requested("/docs/same.html")[0].headers["if-none-match"] == '"same-1"'
    dated = site.requested("/docs/dated.html")[0].headers
    assert dated["if-modified-since"] == "Tue, 01 Jul 2025 10:00:00 GMT"
    assert "if-none-match" not in dated
    transferred = {r.path for r in site.requests if r.body_bytes and r.path.startswith("/docs/")}
    assert transferred == {"/docs/edited.html", "/docs/doomed.html"}  # and the 404's message


def test_a_failed_page_keeps_its_recorded_links_and_the_crawl_goes_on(site: Site) -> None:
    site.resources["/docs/"] = html(links=("only-from-home.html",))
    site.resources["/docs/only-from-home.html"] = html()
    first, _ = crawl(site)
    site.resources["/docs/"] = Resource(b"down for maintenance", status=502)
    second, _ = crawl(site, previous=recorded(first))
    home = second["/docs/"]
    assert (home.status, home.error, home.links) == ("failed", "HTTP 502", first["/docs/"].links)
    assert home.version == first["/docs/"].version
    assert second["/docs/only-from-home.html"].status == "changed"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_fails(site: Site, chunked: bool) -> None:
    site.resources["/docs/"] = html(links=("big.html",))
    site.resources["/docs/big.html"] = Resource(b"x" * 300_000, chunked=chunked)
    pages, _ = crawl(site, limits=CrawlLimits(max_bytes=200_000))
    big = pages["/docs/big.html"]
    assert (big.status, big.body, big.error) == (
        "failed",
        None,
        "the body exceeds the 200000-byte limit",
    )


def test_a_slow_answer_times_out(site: Site) -> None:
    site.resources["/docs/"] = html(links=("slow.html",))
    site.resources["/docs/slow.html"] = Resource(b"late", delay_seconds=30)
    pages, _ = crawl(site, limits=CrawlLimits(timeout_seconds=0.3))
    slow = pages["/docs/slow.html"]
    assert (slow.status, slow.error) == ("failed", "timed out after 0.3 s")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?q=1&a=2#frag", "http://example.com/a/c?q=1&a=2"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/café dir/", "https://example.com:8443/caf%C3%A9%20dir/"),
        ("https://user:secret@example.com/x", "https://example.com/x"),
        ("http://[::1]:8080/", "http://[::1]:8080/"),
        ("ftp://example.com/", None),
        ("mailto:a@example.com", None),
        ("http://example.com:port/", None),
    ],
)
def test_urls_are_normalised(url: str, expected: str | None) -> None:
    assert normalise_url(url) == expected


def test_the_scope_is_the_start_urls_directory() -> None:
    assert Scope.of("https://h/docs/index.html") == Scope("https://h", "/docs/")
    assert Scope.of("https://h/docs/") == Scope("https://h", "/docs/")
    assert Scope.of("https://h/docs") == Scope("https://h", "/")
    scope = Scope.of("http://h:8080/docs/")
    assert scope.contains("http://h:8080/docs/a?x=1")
    assert not scope.contains("http://h:8080/docs")
    assert not scope.contains("https://h:8080/docs/a")
    assert not scope.contains("http://h:8081/docs/a")


def test_a_sitemap_with_a_document_type_declaration_is_refused() -> None:
    entities = (
        b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<urlset><url><loc>http://h/&b;</loc></url></urlset>"
    )
    assert parse_sitemap(entities) == ([], [])
    assert parse_sitemap(b"<urlset><url><loc>http://h/a</loc></url>") == (["http://h/a"], [])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("noindex, NoFollow", {"noindex", "nofollow"}),
        ("TandemBot: noindex", {"noindex"}),
        ("otherbot: noindex", set()),
        (
            "unavailable_after: 25 Jun 2030 15:00:00 PST",
            {"unavailable_after: 25 jun 2030 15:00:00 pst"},
        ),
    ],
)
def test_x_robots_tag_directives_addressed_to_us(header: str, expected: set[str]) -> None:
    assert robots_directives([header], "TandemBot") == expected
