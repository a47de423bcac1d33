"""A known-item labelled set from Debian man pages and Perl module documentation.

Each page's NAME line is split into its names and its one-line description: the
description is the query, the rest of the page the document (title: the page or module
name), and the page is the query's only relevant document. Queries that appear verbatim
in their own document (title included), queries that several pages share (ambiguous) and
queries under MIN_QUERY_WORDS words are dropped, and so are near-empty pages. Every
other page stays in the corpus; pages whose query was dropped or not sampled act as
distractors. A document's text is cut at MAX_WORDS words (at a word boundary), to keep
embedding time bounded.

The text installs offline and without touching the system: `apt-get download` fetches
the packages' .deb files into the cache directory (no root needed, only apt's package
lists) and `dpkg-deb -x` unpacks each one beside them, so slim images whose dpkg config
drops /usr/share/man get the pages too. Man pages come from MAN_PACKAGES (roff source
read by benchmarks/doc_text.py, no groff), POD from POD_PACKAGES (their man pages are the
same text and are skipped). Inputs are read in sorted order and queries sampled with a
fixed seed, so the same package versions give the same set; the versions are recorded
in the set.

    python -m benchmarks.labelled_corpus [--cache-dir DIR] [--queries N] [--rebuild]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.doc_text import parse_man, parse_pod
from benchmarks.quality_set import LabelledDocument, LabelledQuery

FORMAT_VERSION = 1
MAN_PACKAGES = (
    "coreutils", "debhelper", "devscripts", "dpkg-dev", "git-man", "iproute2",
    "libbsd-dev", "libcurl4-doc", "libpcap0.8-dev", "libpcre2-dev", "libssl-doc",
    "libsystemd-dev", "libx11-doc", "libxt-dev", "libzmq3-dev", "lvm2", "manpages",
    "manpages-dev", "ncurses-doc", "openssl", "postgresql-client-15", "systemd",
    "tcl8.6-doc", "tk8.6-doc", "util-linux",
)  # fmt: skip
POD_PACKAGES = (
    "libdatetime-perl", "libdbi-perl", "libio-socket-ssl-perl", "libmojolicious-perl",
    "libmoose-perl", "libperl5.36", "libwww-perl", "perl-doc", "perl-modules-5.36",
)  # fmt: skip
MAX_WORDS = 800
MIN_DOCUMENT_WORDS = 50
MIN_QUERY_WORDS = 3
DEFAULT_QUERIES = 1000
SEED = 8
_MAN_FILE = re.compile(r"usr/share/man/man[^/]*/(?P<page>[^/]+?)\.(?P<section>[^./]+)(\.gz)?$")
_POD_FILE = re.compile(r"/perl[^/]*/.*\.(pm|pod)$")


def bench_cache_dir(name: str) -> Path:
    """The benchmarks' cache directory `name` (built data, never in git)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tandem-bench" / name


def default_cache_dir() -> Path:
    return bench_cache_dir("labelled-corpus")


@dataclass(frozen=True)
class Page:
    id: str
    title: str
    source: str  # package/path inside the package
    description: str  # the NAME line's description: the query
    text: str


def download(packages: tuple[str, ...], debs: Path) -> dict[str, Path]:
    """The .deb of each package in `debs`, fetched with `apt-get download` when missing."""
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not any(debs.glob(f"{p}_*.deb"))]
    if missing:
        completed = subprocess.run(
            ["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True
        )
        if completed.returncode != 0:
            raise SystemExit(
                f"apt-get download failed (run `apt-get update` as root first?):\n"
                f"{completed.stderr.strip()}"
            )
    found: dict[str, Path] = {}
    for package in packages:
        candidates = sorted(debs.glob(f"{package}_*.deb"))
        if not candidates:
            raise SystemExit(f"no .deb for {package} in {debs}")
        found[package] = candidates[-1]
    return found


def unpack(deb: Path, trees: Path) -> Path:
    tree = trees / deb.stem
    if not tree.is_dir():
        partial = trees / f"{deb.stem}.partial"
        partial.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        partial.rename(tree)
    return tree


def deb_version(deb: Path) -> str:
    return urllib.parse.unquote(deb.stem.split("_")[1])


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def files(tree: Path) -> list[Path]:
    # Symbolic links are aliases of another page: the real file is read once.
    return sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def man_pages(package: str, tree: Path) -> list[Page]:
    pages: list[Page] = []
    for path in files(tree):
        relative = path.relative_to(tree).as_posix()
        match = _MAN_FILE.search(relative)
        if match is None:
            continue
        parsed = parse_man(read_text(path))
        if parsed is None:
            continue
        title = f"{match['page']}({match['section']})"
        page_id = f"man/{match['page']}.{match['section']}"
        pages.append(Page(page_id, title, f"{package}/{relative}", parsed.description, parsed.text))
    return pages


def pod_pages(package: str, tree: Path) -> list[Page]:
    pages: list[Page] = []
    for path in files(tree):
        relative = path.relative_to(tree).as_posix()
        if _POD_FILE.search("/" + relative) is None:
            continue
        parsed = parse_pod(read_text(path))
        if parsed is None or not re.fullmatch(r"[\w:.\-]+", parsed.name):
            continue
        source = f"{package}/{relative}"
        pages.append(
            Page(f"pod/{parsed.name}", parsed.name, source, parsed.description, parsed.text)
        )
    return pages


def cap_words(text: str, limit: int) -> str:
    """The first `limit` words of `text`, its line and paragraph breaks kept."""
    for words, match in enumerate(re.finditer(r"\S+", text), start=1):
        if words == limit:
            return text[: match.end()]
    return text


def normal_text(text: str) -> str:
    return " ".join(text.lower().split())


def select(pages: list[Page], queries: int, seed: int) -> dict[str, Any]:
    """Documents (deduplicated by id, capped) and the sampled known-item queries."""
    documents: dict[str, Page] = {}
    for page in pages:
        if len(page.text.split()) >= MIN_DOCUMENT_WORDS and page.id not in documents:
            documents[page.id] = page
    sharing: dict[str, int] = {}
    for page in documents.values():
        sharing[normal_text(page.description)] = sharing.get(normal_text(page.description), 0) + 1
    capped = {i: cap_words(p.text, MAX_WORDS) for i, p in documents.items()}
    candidates = sorted(
        page.id
        for page in documents.values()
        if len(page.description.split()) >= MIN_QUERY_WORDS
        and sharing[normal_text(page.description)] == 1
        and normal_text(page.description) not in normal_text(f"{page.title}\n{capped[page.id]}")
    )
    chosen = sorted(random.Random(seed).sample(candidates, min(queries, len(candidates))))
    return {
        "documents": [
            {"id": p.id, "title": p.title, "source": p.source, "text": capped[p.id]}
            for p in sorted(documents.values(), key=lambda p: p.id)
        ],
        "queries": [
            {"id": f"q-{i:04d}", "text": documents[d].description, "relevant": [d]}
            for i, d in enumerate(chosen)
        ],
        "query_candidates": len(candidates),
        "dropped_ambiguous": sum(n for n in sharing.values() if n > 1),
    }


def build(cache_dir: Path, queries: int = DEFAULT_QUERIES, seed: int = SEED) -> Path:
    debs = download(MAN_PACKAGES + POD_PACKAGES, cache_dir / "debs")
    pages: list[Page] = []
    for package in sorted(debs):
        tree = unpack(debs[package], cache_dir / "trees")
        reader = pod_pages if package in POD_PACKAGES else man_pages
        pages.extend(reader(package, tree))
    built = select(pages, queries, seed)
    built |= {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "max_words": MAX_WORDS,
        "packages": {p: deb_version(debs[p]) for p in sorted(debs)},
        "pages_read": len(pages),
    }
    path = set_path(cache_dir, queries, seed)
    path.write_bytes(orjson.dumps(built, option=orjson.OPT_INDENT_2))
    return path


def set_path(cache_dir: Path, queries: int = DEFAULT_QUERIES, seed: int = SEED) -> Path:
    return cache_dir / f"set-v{FORMAT_VERSION}-q{queries}-s{seed}.json"


def load(path: Path) -> tuple[list[LabelledDocument], list[LabelledQuery]]:
    raw: dict[str, Any] = orjson.loads(path.read_bytes())
    documents = [
        LabelledDocument(d["id"], d["source"], d["title"], d["text"], True)
        for d in raw["documents"]
    ]
    queries = [
        LabelledQuery(q["id"], q["text"], "known-item", tuple(q["relevant"]))
        for q in raw["queries"]
    ]
    return documents, queries


def ensure(cache_dir: Path, queries: int = DEFAULT_QUERIES, rebuild: bool = False) -> Path:
    """The built set's path, building it first when it is missing (or `rebuild`)."""
    path = set_path(cache_dir, queries)
    if rebuild or not path.exists():
        path = build(cache_dir, queries)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path = ensure(args.cache_dir, args.queries, args.rebuild)
    raw = orjson.loads(path.read_bytes())
    print(
        f"{len(raw['documents'])} documents, {len(raw['queries'])} queries "
        f"(of {raw['query_candidates']} usable) -> {path}"
    )


if __name__ == "__main__":
    main()
