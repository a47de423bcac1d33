"""Real text for the scale benchmark (benchmarks/real_scale_run.py): Debian package
descriptions, man and POD pages, and HTML documentation packages, with known-item queries.

Documents, all from what apt installs offline:
- every package of apt's English description lists (Translation-en): the long
  description is the document, the package name its title, the short description its
  known-item query;
- the man pages and POD of benchmarks/labelled_corpus.py's packages (same parsers): the
  NAME line's description is the query, the page the document;
- every HTML page of HTML_PACKAGES (text by Tandem's own HTML reader): distractors only;
- past those, the HTML pages of MORE_HTML_PACKAGES: more distractors, which the chunks put
  after all of the above in load order (benchmarks/real_scale_chunks.py), so that the
  sizes the first packages fill keep their chunks when these are added.
A query is dropped when it is under MIN_QUERY_WORDS words, when it appears verbatim in its
own document (title included) or when several documents share it. QUERIES of the rest are
sampled with a fixed seed and split into a tuning and a held-out half by
benchmarks/ranking_split.py.

    python -m benchmarks.real_scale_corpus [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import labelled_corpus as labelled
from benchmarks import ranking_split
from tandem.worker.html_text import html_to_text

FORMAT_VERSION = 1
HTML_PACKAGES = (
    "python3.11-doc", "postgresql-doc-15", "glibc-doc", "libstdc++-12-doc", "rust-doc",
)  # fmt: skip
# The first packages give 322k chunks; these, past 1M (the largest size; without VTK's
# class reference they gave 334k more).
MORE_HTML_PACKAGES = (
    "openjdk-17-doc", "linux-doc-6.1", "erlang-doc", "qtbase5-doc-html", "sagemath-doc",
    "libboost1.81-doc", "libgtk-4-doc", "libeigen3-doc", "vtk9-doc",
)  # fmt: skip
TRANSLATIONS = Path("/var/lib/apt/lists")
MIN_DOCUMENT_WORDS = 12
MIN_HTML_WORDS = 50
MIN_QUERY_WORDS = 3
QUERIES = 800
SEED = 20
HTML_MAX_CHARS = 2_000_000
_HTML_FILE = re.compile(r"\.x?html?(\.gz)?$")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    source: str
    kind: str  # package / man / pod / html
    text: str
    query: str  # the known-item query this document answers ("" for none)


def in_extension(document: Document) -> bool:
    """Whether the document is one of MORE_HTML_PACKAGES' pages (the load order's end)."""
    return document.kind == "html" and document.source.split("/", 1)[0] in MORE_HTML_PACKAGES


def default_cache_dir() -> Path:
    return labelled.bench_cache_dir("real-scale")


def parse_translation(text: str) -> Iterator[tuple[str, str, str]]:
    """(package, short description, long description) of each stanza of a Translation
    file; a " ." line in the long description is a paragraph break."""
    for stanza in text.split("\n\n"):
        package = short = ""
        body: list[str] = []
        in_description = False
        for line in stanza.splitlines():
            if line.startswith("Package:"):
                package, in_description = line.split(":", 1)[1].strip(), False
            elif line.startswith("Description-") and not line.startswith("Description-md5"):
                short, in_description = line.split(":", 1)[1].strip(), True
            elif in_description and line.startswith(" "):
                body.append("" if line.strip() == "." else line[1:].rstrip())
            else:
                in_description = False
        if package and short:
            yield package, short, "\n".join(body).strip()


def translation_files(lists: Path = TRANSLATIONS) -> list[Path]:
    return sorted(lists.glob("*_main_i18n_Translation-en*"))


def _cat(path: Path) -> str:
    # apt's own helper reads whatever compression apt chose for its lists (lz4, xz, ...).
    completed = subprocess.run(
        ["/usr/lib/apt/apt-helper", "cat-file", str(path)], capture_output=True, check=True
    )
    return completed.stdout.decode("utf-8", errors="replace")


def package_documents(files: list[Path]) -> list[Document]:
    documents: dict[str, Document] = {}
    for path in files:
        for package, short, long in parse_translation(_cat(path)):
            if package not in documents and len(long.split()) >= MIN_DOCUMENT_WORDS:
                source = f"apt-lists/{path.name.split('_i18n_')[0]}/{package}"
                documents[package] = Document(
                    f"pkg/{package}", package, source, "package", long, short
                )
    return [documents[p] for p in sorted(documents)]


def page_documents(cache_dir: Path) -> tuple[list[Document], dict[str, str]]:
    """Man and POD pages (benchmarks/labelled_corpus.py's packages and parsers)."""
    debs = labelled.download(labelled.MAN_PACKAGES + labelled.POD_PACKAGES, cache_dir / "debs")
    documents: dict[str, Document] = {}
    for package in sorted(debs):
        tree = labelled.unpack(debs[package], cache_dir / "trees")
        pod = package in labelled.POD_PACKAGES
        reader = labelled.pod_pages if pod else labelled.man_pages
        for page in reader(package, tree):
            if page.id not in documents and len(page.text.split()) >= labelled.MIN_DOCUMENT_WORDS:
                kind = "pod" if pod else "man"
                documents[page.id] = Document(
                    page.id, page.title, page.source, kind, page.text, page.description
                )
    return list(documents.values()), {p: labelled.deb_version(d) for p, d in debs.items()}


def html_documents(
    cache_dir: Path, packages: tuple[str, ...]
) -> tuple[list[Document], dict[str, str]]:
    debs = labelled.download(packages, cache_dir / "debs")
    documents: list[Document] = []
    for package in sorted(debs):
        tree = labelled.unpack(debs[package], cache_dir / "trees")
        for path in labelled.files(tree):
            relative = path.relative_to(tree).as_posix()
            if _HTML_FILE.search(relative) is None:
                continue
            title, text, _ = html_to_text(labelled.read_text(path), HTML_MAX_CHARS)
            if len(text.split()) < MIN_HTML_WORDS:
                continue  # redirects, frames, empty index pages
            source = f"{package}/{relative}"
            documents.append(
                Document(f"html/{source}", title or path.stem, source, "html", text, "")
            )
    return documents, {p: labelled.deb_version(d) for p, d in debs.items()}


def query_candidates(documents: list[Document]) -> list[Document]:
    """Documents whose query is usable: long enough, not in the document, not shared."""
    sharing: dict[str, int] = {}
    for document in documents:
        if document.query:
            sharing[labelled.normal_text(document.query)] = (
                sharing.get(labelled.normal_text(document.query), 0) + 1
            )
    return [
        d
        for d in documents
        if d.query
        and len(d.query.split()) >= MIN_QUERY_WORDS
        and sharing[labelled.normal_text(d.query)] == 1
        and labelled.normal_text(d.query) not in labelled.normal_text(f"{d.title}\n{d.text}")
    ]


def select_queries(documents: list[Document], count: int, seed: int) -> list[dict[str, Any]]:
    candidates = query_candidates(documents)
    chosen = sorted(
        random.Random(seed).sample(candidates, min(count, len(candidates))), key=lambda d: d.id
    )
    queries = [
        {
            "id": f"q-{i:04d}",
            "text": d.query,
            "kind": "known-item",
            "relevant": d.id,
            "origin": d.kind,
        }
        for i, d in enumerate(chosen)
    ]
    halves = ranking_split.assign([_Query(q["id"], q["kind"]) for q in queries])
    for query in queries:
        query["half"] = halves[query["id"]]
    return queries


@dataclass(frozen=True)
class _Query:
    id: str
    kind: str


def build(cache_dir: Path, queries: int = QUERIES, seed: int = SEED) -> Path:
    """documents.jsonl (one document a line) and corpus.json (queries, versions, counts)."""
    packages = package_documents(translation_files())
    pages, page_versions = page_documents(cache_dir)
    html, html_versions = html_documents(cache_dir, HTML_PACKAGES)
    more, more_versions = html_documents(cache_dir, MORE_HTML_PACKAGES)
    documents = packages + pages + html + more
    chosen = select_queries(packages + pages, queries, seed)
    target = cache_dir / f"corpus-v{FORMAT_VERSION}"
    target.mkdir(parents=True, exist_ok=True)
    with (target / "documents.jsonl").open("wb") as handle:
        for document in documents:
            handle.write(orjson.dumps(document.__dict__) + b"\n")
    counts = {k: sum(d.kind == k for d in documents) for k in ("package", "man", "pod", "html")}
    description = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "documents": len(documents),
        "documents_by_kind": counts,
        "query_candidates": len(query_candidates(packages + pages)),
        "queries": chosen,
        "split": ranking_split.RULE,
        "extension": {"packages": list(MORE_HTML_PACKAGES), "documents": len(more)},
        "packages": page_versions | html_versions | more_versions,
        "package_lists": [p.name for p in translation_files()],
    }
    (target / "corpus.json").write_bytes(orjson.dumps(description, option=orjson.OPT_INDENT_2))
    return target


def read_documents(directory: Path) -> Iterator[Document]:
    with (directory / "documents.jsonl").open("rb") as handle:
        for line in handle:
            yield Document(**orjson.loads(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--queries", type=int, default=QUERIES)
    args = parser.parse_args()
    target = build(args.cache_dir, args.queries)
    raw = orjson.loads((target / "corpus.json").read_bytes())
    print(
        f"{raw['documents']} documents {raw['documents_by_kind']}, "
        f"{len(raw['queries'])} queries -> {target}"
    )


if __name__ == "__main__":
    main()
