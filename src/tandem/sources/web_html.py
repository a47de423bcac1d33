"""What the crawler reads in an HTML page: the links to follow, the title, and whether the
page may be indexed and its links followed (robots meta tags and X-Robots-Tag). The text
itself is the worker's extractor's business."""

from __future__ import annotations

from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag
from bs4.builder import ParserRejectedMarkup

from tandem.sources.web_scope import normalise_url

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class HtmlReading:
    links: tuple[str, ...]  # normalised, in document order, each once; none when nofollow
    title: str | None
    index: bool  # False: "noindex"
    follow: bool  # False: "nofollow"


def is_html(content_type: str | None) -> bool:
    return media_type(content_type) in HTML_TYPES


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# Directives written "name: value", so that "max-snippet: 20" is not taken for a directive
# addressed to a robot named "max-snippet".
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)


def robots_directives(header_values: list[str], agent: str) -> set[str]:
    """The X-Robots-Tag directives for us: unprefixed ones and "tandembot: ..." ones."""
    directives: set[str] = set()
    for value in header_values:
        prefix, colon, rest = value.partition(":")
        robot = prefix.strip().lower()
        if colon and robot.isidentifier() and robot not in _VALUED_DIRECTIVES:
            if robot != agent.lower():
                continue  # "otherbot: noindex" is not about us
            value = rest
        directives.update(_split_directives(value))
    return directives


def _split_directives(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def read_html(body: bytes, url: str, agent: str, directives: set[str]) -> HtmlReading:
    """`directives`: what X-Robots-Tag said (robots_directives)."""
    directives = set(directives)
    try:
        # Bytes, not str: BeautifulSoup honours a BOM or <meta charset> before guessing.
        soup = BeautifulSoup(body, "html.parser")
    except ParserRejectedMarkup:
        return _readable(directives, links=(), title=None)
    for meta in soup.find_all("meta", attrs={"name": True, "content": True}):
        if _attribute(meta, "name").lower() in ("robots", agent.lower()):
            directives.update(_split_directives(_attribute(meta, "content")))
    base = url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base = normalise_url(_attribute(base_tag, "href"), base=url) or url
    links: dict[str, None] = {}  # a dict keeps the first-seen order
    for tag in soup.find_all(["a", "area", "link"], href=True):
        rel = {word.lower() for word in _words(tag.get("rel"))}
        if tag.name == "link" and "next" not in rel:
            continue  # stylesheets, icons, feeds: not pages of the site
        if "nofollow" in rel:
            continue
        link = normalise_url(_attribute(tag, "href"), base=base)
        if link is not None:
            links[link] = None
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if isinstance(title_tag, Tag) else ""
    return _readable(directives, links=tuple(links), title=title or None)


def _readable(directives: set[str], links: tuple[str, ...], title: str | None) -> HtmlReading:
    index = not directives & {"noindex", "none"}
    follow = not directives & {"nofollow", "none"}
    return HtmlReading(links if follow else (), title, index, follow)


def _attribute(tag: Tag, name: str) -> str:
    value = tag.get(name)
    return value if isinstance(value, str) else " ".join(_words(value))


def _words(value: object) -> list[str]:
    # bs4 gives multi-valued attributes (rel, class) as lists and the others as strings.
    if isinstance(value, str):
        return value.split() if value else []
    if isinstance(value, list):
        return [str(word) for word in value]
    return []
