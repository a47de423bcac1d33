"""The scale corpus's documents in load order, cut into chunks by Tandem's own chunker.

Sizes are nested prefixes of one chunk list (16k within 100k within 300k within 1M), so
one table grows. So that every size can answer every query, the first FIRST_SIZE chunks
hold all the query targets, mixed with documents drawn at random; the documents after
them follow in a seeded random order, and the extension's pages (real_scale_corpus.
MORE_HTML_PACKAGES) come last, in an order of their own: adding them leaves the chunks of
every size the other documents fill as they were. A size takes the first N chunks exactly (the last
document may be cut). Chunks are what ingest makes: Tandem's Chunker with the prepared
model's tokenizer and window and the default overlap, content type text/html for HTML
pages and text/plain for the rest.

    python -m benchmarks.real_scale_chunks [--cache-dir DIR] [--max-chunks N]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import real_scale_corpus as corpus
from tandem.config import ModelCacheSettings
from tandem.documents.parsed import ContentType, ParsedDocument
from tandem.model_files import ModelKind, locate_prepared
from tandem.worker.chunking import Chunker

FIRST_SIZE = 16_000
MAX_CHUNKS = 1_000_000
ORDER_SEED = 21


@dataclass(frozen=True)
class Chunk:
    document_id: str
    ordinal: int
    title: str
    text: str  # the body, as stored in chunks.text
    embed_text: str  # what is embedded: title + "\n" + body
    token_count: int


def content_type(document: corpus.Document) -> str:
    return ContentType.HTML if document.kind == "html" else ContentType.TEXT


def load_order(
    documents: list[corpus.Document], targets: set[str], seed: int = ORDER_SEED
) -> tuple[list[corpus.Document], list[corpus.Document]]:
    """(query targets, the other documents in seeded random order, the extension's last)."""
    first = [d for d in documents if d.id in targets]
    rest = [d for d in documents if d.id not in targets and not corpus.in_extension(d)]
    extension = [d for d in documents if corpus.in_extension(d) and d.id not in targets]
    random.Random(seed).shuffle(rest)
    random.Random(seed + 1).shuffle(extension)
    return first, rest + extension


def ordered_chunks(
    chunker: Chunker,
    first: list[corpus.Document],
    rest: list[corpus.Document],
    max_chunks: int,
    seed: int = ORDER_SEED,
    reuse: ChunksOf | None = None,
) -> Iterator[tuple[corpus.Document, list[Chunk]]]:
    """(document, its chunks) in load order, until max_chunks chunks were given; the
    chunks `reuse` has for a document are taken instead of cutting it again."""

    def cut(document: corpus.Document) -> list[Chunk]:
        if reuse is not None and (chunks := reuse.get(document.id)) is not None:
            return chunks
        parsed = ParsedDocument(
            document.title, document.text, document.source, content_type(document)
        )
        return [
            Chunk(document.id, c.ordinal, c.title, c.text, c.embed_text, c.token_count)
            for c in chunker.chunk(parsed)
        ]

    head = [(d, cut(d)) for d in first]
    given = sum(len(c) for _, c in head)
    remaining = iter(rest)
    for document in remaining:
        if given >= FIRST_SIZE:
            break
        head.append((document, cut(document)))
        given += len(head[-1][1])
    random.Random(seed).shuffle(head)
    emitted = 0
    for document, chunks in head:
        yield document, chunks
        emitted += len(chunks)
    for document in remaining:
        if emitted >= max_chunks:
            return
        chunks = cut(document)
        emitted += len(chunks)
        yield document, chunks


class ChunksOf:
    """The chunks an earlier chunks.jsonl holds, by document id, read when asked (a line's
    offset is all that is kept)."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("rb")
        self._offsets: dict[str, int] = {}
        offset = 0
        for line in self._handle:
            self._offsets[orjson.loads(line)["id"]] = offset
            offset += len(line)

    def get(self, document_id: str) -> list[Chunk] | None:
        offset = self._offsets.get(document_id)
        if offset is None:
            return None
        self._handle.seek(offset)
        return [Chunk(**c) for c in orjson.loads(self._handle.readline())["chunks"]]

    def close(self) -> None:
        self._handle.close()


def chunker() -> Chunker:
    settings = ModelCacheSettings()
    directory, _ = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER
    )
    return Chunker.from_model_dir(directory)


def chunk_file(directory: Path) -> Path:
    return directory / "chunks.jsonl"


def write_chunks(directory: Path, max_chunks: int = MAX_CHUNKS, *, reuse: bool = False) -> int:
    """Chunk the built corpus in load order into chunks.jsonl; returns the chunk count.
    A line is a document: its row fields and its chunks. `reuse`: a document the existing
    chunks.jsonl holds keeps its chunks there (documents were added, nothing else changed:
    the chunker and the other documents are as they were)."""
    description = orjson.loads((directory / "corpus.json").read_bytes())
    targets = {q["relevant"] for q in description["queries"]}
    first, rest = load_order(list(corpus.read_documents(directory)), targets)
    total = 0
    started = time.perf_counter()
    partial = directory / "chunks.partial.jsonl"
    earlier = ChunksOf(chunk_file(directory)) if reuse and chunk_file(directory).exists() else None
    with partial.open("wb") as handle:
        given = ordered_chunks(chunker(), first, rest, max_chunks, reuse=earlier)
        for document, chunks in given:
            row = {
                "id": document.id,
                "title": document.title,
                "source": document.source,
                "content_type": content_type(document),
                "chunks": [c.__dict__ for c in chunks],
            }
            handle.write(orjson.dumps(row) + b"\n")
            handle.flush()  # the embedder may read the partial file while this runs
            total += len(chunks)
            if total // 20_000 != (total - len(chunks)) // 20_000:
                print(f"  {total} chunks, {time.perf_counter() - started:.0f} s", flush=True)
    if earlier is not None:
        earlier.close()
    partial.rename(chunk_file(directory))
    return total


def read_chunks(
    directory: Path, limit: int, partial: bool = False
) -> Iterator[tuple[dict[str, Any], list[Chunk]]]:
    """(document row fields, its chunks) in load order, the first `limit` chunks in all.
    `partial`: read what a running write_chunks has written so far when it is not done."""
    given = 0
    path = chunk_file(directory)
    if partial and not path.exists():
        path = directory / "chunks.partial.jsonl"
    with path.open("rb") as handle:
        for line in handle:
            if given >= limit:
                return
            if not line.endswith(b"\n"):
                return  # a line still being written
            row = orjson.loads(line)
            every = [Chunk(**c) for c in row.pop("chunks")]
            row["chunk_count"] = len(every)
            chunks = every[: limit - given]
            given += len(chunks)
            yield row, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=corpus.default_cache_dir())
    parser.add_argument("--max-chunks", type=int, default=MAX_CHUNKS)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the chunks of documents the existing chunks.jsonl holds (documents added)",
    )
    args = parser.parse_args()
    directory = args.cache_dir / f"corpus-v{corpus.FORMAT_VERSION}"
    total = write_chunks(directory, args.max_chunks, reuse=args.reuse)
    print(f"{total} chunks -> {chunk_file(directory)}")


if __name__ == "__main__":
    main()
