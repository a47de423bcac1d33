"""The URLs of a web source: one spelling per page, and which pages belong to the source."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are: the reserved ones and existing %-escapes. Spaces and
# non-ASCII are escaped, so "café" and "caf%C3%A9" are one page, not two.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def normalise_url(url: str, base: str | None = None) -> str | None:
    """`url` (resolved against `base` when given) as the crawl spells it: lower-case scheme
    and host, no default port, no fragment, no "." or ".." segments, the query kept as it
    is. None when it is not an http(s) URL with a host (mailto:, javascript:, data:...)."""
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased by urllib; any user:password@ is left out
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(_remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    # urljoin resolves dots in relative links only; an absolute link can hold them too.
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for position, segment in enumerate(segments):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
            continue
        if position == len(segments) - 1:
            kept.append("")  # "/a/b/.." is the directory "/a/"
    return "/" + "/".join(kept)


@dataclass(frozen=True)
class Scope:
    """The pages of a source: same scheme, host and port as the start URL, and a path
    under the start URL's directory (https://h/docs/ and https://h/docs/index.html both
    give /docs/; https://h/docs gives /)."""

    origin: str  # "https://h" or "http://h:8080"
    prefix: str  # "/docs/"

    @classmethod
    def of(cls, start_url: str) -> Scope:
        parts = urlsplit(start_url)
        return cls(f"{parts.scheme}://{parts.netloc}", parts.path[: parts.path.rfind("/") + 1])

    def contains(self, url: str) -> bool:
        """`url` must be normalised (normalise_url)."""
        return url.startswith(self.origin + self.prefix)
