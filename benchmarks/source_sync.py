"""What keeping sources in sync costs: a folder of real text files and a web site on
loopback, synced twice through the real stack (API, worker, both model servers).

- folder: 5,000 man pages and Perl documents (benchmarks/labelled_corpus.py, `make
  bench-data`) as files in their packages' trees; a first sync, then a second one of the
  unchanged folder: passages embedded and time, side by side.
- edit: one paragraph of a 50-chunk document rewritten; the chunks re-embedded.
- web: 1,000 of those documents as HTML pages behind index pages; a first crawl, then a
  second one after 10 pages changed: bodies fetched (200 with a body) against conditional
  answers (304), and passages embedded.

    python -m benchmarks.source_sync [--files 5000] [--pages 1000]

Writes benchmarks/results/source_sync.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from tests.source_site import Resource, Site, running_site

from benchmarks.labelled_corpus import default_cache_dir, ensure, load
from benchmarks.processes import unwind_on_sigterm
from benchmarks.quality_set import LabelledDocument
from benchmarks.results_io import write_result
from benchmarks.tandem_stack import api_server, backends, model_servers, worker
from tandem.db.session import normalize_url

POLL_SECONDS = 0.25
LONG_DOCUMENT_PARTS = 14  # documents joined into one of about 50 chunks


def _write_tree(root: Path, documents: list[LabelledDocument]) -> None:
    for document in documents:
        # Their packages' own trees: many directories, many repeated names (index, README).
        relative = document.source.removesuffix(".gz") + ".txt"
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{document.title}\n\n{document.text}\n")


class Stack:
    def __init__(self, api_url: str, database_url: str) -> None:
        self.api = api_url
        self._engine = create_engine(normalize_url(database_url))

    def sql(self, statement: str, **params: object) -> list[Any]:
        with self._engine.begin() as connection:
            return list(connection.execute(text(statement), params))

    def add(self, body: dict[str, object]) -> float:
        started = time.perf_counter()
        response = httpx.post(f"{self.api}/api/sources", json=body, timeout=30)
        response.raise_for_status()
        self.wait(str(body["name"]), 0)
        return time.perf_counter() - started

    def sync(self, name: str) -> float:
        before = self.last(name)["id"]
        started = time.perf_counter()
        httpx.post(f"{self.api}/api/sources/{name}/sync", timeout=30).raise_for_status()
        self.wait(name, before)
        return time.perf_counter() - started

    def last(self, name: str) -> dict[str, Any]:
        body = httpx.get(f"{self.api}/api/sources/{name}", timeout=30).json()
        last: dict[str, Any] = body["last_sync"]
        return last

    def wait(self, name: str, after: int) -> None:
        while True:
            sync = httpx.get(f"{self.api}/api/sources/{name}", timeout=30).json()["last_sync"]
            if sync and sync["id"] > after and sync["status"] in ("succeeded", "failed"):
                if sync["status"] == "failed":
                    raise RuntimeError(f"the sync of {name} failed: {sync['errors'][:5]}")
                return
            time.sleep(POLL_SECONDS)

    def embedded(self, name: str) -> int:
        """Passages embedded for `name`'s last sync (its attempt's items)."""
        sync = self.last(name)
        if sync["attempt_id"] is None:
            return 0
        rows = self.sql(
            "SELECT coalesce(sum(embedded_chunks), 0) FROM index_attempt_items "
            "WHERE attempt_id = CAST(:id AS uuid)",
            id=sync["attempt_id"],
        )
        return int(rows[0][0])

    def counts(self, name: str) -> dict[str, int]:
        sync = self.last(name)
        return {k: sync[k] for k in ("added", "updated", "unchanged", "deleted", "failed")}


def folder_runs(stack: Stack, root: Path, documents: list[LabelledDocument]) -> dict[str, Any]:
    _write_tree(root, documents)
    first = stack.add({"name": "man", "kind": "folder", "path": str(root)})
    first_counts, first_embedded = stack.counts("man"), stack.embedded("man")
    second = stack.sync("man")
    return {
        "files": len(documents),
        "first_sync": {"seconds": first, "embedded": first_embedded} | first_counts,
        "second_sync": {"seconds": second, "embedded": stack.embedded("man")} | stack.counts("man"),
        "second_over_first_time": second / first,
    }


def edit_run(stack: Stack, root: Path, documents: list[LabelledDocument]) -> dict[str, Any]:
    paragraphs = [p for d in documents for p in d.text.split("\n\n") if len(p.split()) > 20]
    path = root / "long" / "handbook.txt"
    path.parent.mkdir(parents=True)
    text_ = "\n\n".join(paragraphs[: LONG_DOCUMENT_PARTS * 12])
    path.write_text(text_)
    stack.sync("man")
    document_id = "man:long/handbook.txt"
    chunks = stack.sql("SELECT count(*) FROM chunks WHERE document_id = :id", id=document_id)
    middle = text_.split("\n\n")
    target = len(middle) // 2
    middle[target] = "This paragraph was rewritten by the benchmark: " + middle[target][::-1]
    path.write_text("\n\n".join(middle))
    stack.sync("man")
    [[embedded, total]] = stack.sql(
        "SELECT embedded_chunks, chunk_count FROM index_attempt_items WHERE document_id = :id "
        "ORDER BY id DESC LIMIT 1",
        id=document_id,
    )
    return {"chunks_before": int(chunks[0][0]), "chunks_after": total, "re_embedded": embedded}


def _site(site: Site, documents: list[LabelledDocument], version: str = "1") -> None:
    per_section = 100
    sections = [documents[i : i + per_section] for i in range(0, len(documents), per_section)]
    links = "".join(f'<a href="s{n}.html">section {n}</a>' for n in range(len(sections)))
    site.resources["/docs/"] = _html("Documentation", links, "index")
    for n, section in enumerate(sections):
        anchors = "".join(f'<a href="p{n}-{k}.html">{d.title}</a>' for k, d in enumerate(section))
        site.resources[f"/docs/s{n}.html"] = _html(f"Section {n}", anchors, f"s{n}")
        for k, document in enumerate(section):
            body = "".join(f"<p>{p}</p>" for p in document.text.split("\n\n"))
            site.resources[f"/docs/p{n}-{k}.html"] = _html(document.title, body, version)


def _html(title: str, body: str, etag: str) -> Resource:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    return Resource(page.encode(), etag=f'"{title}-{etag}"')


def web_runs(stack: Stack, documents: list[LabelledDocument]) -> dict[str, Any]:
    with running_site() as site:
        _site(site, documents)
        source = {
            "name": "site",
            "kind": "web",
            "url": site.url("/docs/"),
            "max_pages": len(documents) + 100,
            "requests_per_second": 100,
        }
        first = stack.add(source)
        first_counts, first_embedded = stack.counts("site"), stack.embedded("site")
        site.forget_requests()
        changed = [f"/docs/p{n}-0.html" for n in range(10)]
        for path in changed:
            old = site.resources[path]
            site.resources[path] = Resource(
                old.body.replace(b"</body>", b"<p>Revised by the benchmark.</p></body>"),
                etag='"revised"',
            )
        second = stack.sync("site")
        bodies = [r.path for r in site.requests if r.status == 200 and r.body_bytes]
        not_modified = sum(r.status == 304 for r in site.requests)
    return {
        "pages": len(documents),
        "changed_pages": len(changed),
        "first_sync": {"seconds": first, "embedded": first_embedded} | first_counts,
        "second_sync": {
            "seconds": second,
            "embedded": stack.embedded("site"),
            "bodies_fetched": len(bodies),
            "bodies_fetched_of_changed_pages": len(set(bodies) & set(changed)),
            "not_modified": not_modified,
        }
        | stack.counts("site"),
    }


def main() -> None:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--pages", type=int, default=1000)
    args = parser.parse_args()
    documents, _ = load(ensure(default_cache_dir()))
    folder_documents = documents[: args.files]
    web_documents = documents[-args.pages :]
    with tempfile.TemporaryDirectory(prefix="source-sync-") as scratch, ExitStack() as stack:
        work = Path(scratch)
        (work / "logs").mkdir()
        backend = stack.enter_context(backends(work, durable=False))
        servers = stack.enter_context(model_servers(work / "logs", ("inference", "indexing")))
        api = stack.enter_context(api_server(work / "logs", backend, servers["inference"].url))
        stack.enter_context(worker(work / "logs", backend, servers["indexing"].url))
        tandem = Stack(api.url, backend.database_url)
        result = {
            "folder": folder_runs(tandem, work / "tree", folder_documents),
            "edit": edit_run(tandem, work / "tree", folder_documents),
            "web": web_runs(tandem, web_documents),
        }
    path = write_result("source_sync", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
