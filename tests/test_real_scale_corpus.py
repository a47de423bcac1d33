"""The real-text scale corpus (benchmarks/real_scale_corpus.py, real_scale_chunks.py):
Translation-file parsing, known-item query selection and split, and load-order chunking
with Tandem's chunker and the prepared model's tokenizer, on real Debian descriptions."""

from __future__ import annotations

import pytest
from benchmarks import ranking_split
from benchmarks import real_scale_chunks as chunks_
from benchmarks import real_scale_corpus as corpus
from benchmarks.real_scale_corpus import Document

from tandem.worker.chunking import Chunker

# Three stanzas as Debian bookworm's Translation-en has them (zstd's second paragraph
# break, grep's quotes), plus a stanza without a description, which must be skipped.
TRANSLATION = """Package: grep
Description-md5: f9188c5583d41955f3b3fe60b9d445f1
Description-en: GNU grep, egrep and fgrep
 'grep' is a utility to search for text in files; it can be used from the
 command line or in scripts.  Even if you don't want to use it, other packages
 on your system probably will.
 .
 The GNU family of grep utilities may be the "fastest grep in the west".

Package: zstd
Description-md5: d2e4d40bb07cc70b5a32d3b4a9b5f53d
Description-en: fast lossless compression algorithm -- CLI tool
 Zstd, short for Zstandard, is a fast lossless compression algorithm, targeting
 real-time compression scenarios at zlib-level compression ratio.
 .
 This package contains the CLI program implementing zstd.

Package: broken
Description-md5: 00000000000000000000000000000000

Package: sed
Description-md5: 2ed71305ee7a49ce4438c58140980d2f
Description-en: GNU stream editor for filtering/transforming text
 sed reads the specified files or the standard input if no
 files are specified, makes editing changes according to a
 list of commands, and writes the results to the standard
 output.
"""


def test_translation_stanzas_give_short_and_long_descriptions() -> None:
    parsed = list(corpus.parse_translation(TRANSLATION))
    assert [p for p, _, _ in parsed] == ["grep", "zstd", "sed"]
    _, short, long = parsed[1]
    assert short == "fast lossless compression algorithm -- CLI tool"
    assert long.startswith("Zstd, short for Zstandard")
    assert "\n\nThis package contains" in long  # " ." is a paragraph break
    assert "Description-md5" not in long


def _documents() -> list[Document]:
    return [
        Document(f"pkg/{p}", p, f"lists/{p}", "package", long, short)
        for p, short, long in corpus.parse_translation(TRANSLATION)
    ]


def test_queries_in_their_document_shared_or_short_are_dropped() -> None:
    documents = _documents()
    # grep's short description is not in its long one; sed's is not either: both usable.
    usable = {d.id for d in corpus.query_candidates(documents)}
    assert usable == {"pkg/grep", "pkg/zstd", "pkg/sed"}
    verbatim = Document("pkg/x", "x", "s", "package", "a GNU stream editor here", "stream editor")
    shared = [
        Document(f"man/{n}", n, "s", "man", "unrelated text " * 20, "print the working directory")
        for n in ("pwd.1", "pwd.1posix")
    ]
    short = Document("man/ls.1", "ls", "s", "man", "list things " * 20, "list files")
    kept = {d.id for d in corpus.query_candidates([*documents, verbatim, *shared, short])}
    assert kept == usable


def test_queries_are_split_by_the_ranking_split_rule() -> None:
    queries = corpus.select_queries(_documents(), 3, seed=1)
    assert sorted(q["relevant"] for q in queries) == ["pkg/grep", "pkg/sed", "pkg/zstd"]
    halves = ranking_split.assign(
        [corpus._Query(q["id"], q["kind"]) for q in queries]  # the same rule, recomputed
    )
    assert {q["id"]: q["half"] for q in queries} == halves
    assert {q["half"] for q in queries} == {"tuning", "held_out"}


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return chunks_.chunker()


def test_targets_come_first_and_chunks_are_the_chunkers(chunker: Chunker) -> None:
    documents = _documents()
    long_text = "\n\n".join(d.text for d in documents) * 12  # several chunks
    documents.append(Document("html/long", "A long page", "doc/long", "html", long_text, ""))
    first, rest = chunks_.load_order(documents, {"pkg/sed"})
    assert [d.id for d in first] == ["pkg/sed"]
    given = list(chunks_.ordered_chunks(chunker, first, rest, max_chunks=1_000))
    assert sorted(d.id for d, _ in given) == sorted(d.id for d in documents)
    by_id = {d.id: c for d, c in given}
    assert len(by_id["html/long"]) > 1
    for document, chunks in given:
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        for chunk in chunks:
            assert chunk.text in document.text
            assert chunk.embed_text == f"{chunk.title}\n{chunk.text}"
            assert chunk.token_count <= chunker.chunk_tokens
    # A cap stops after the document that reaches it (all fit in the first segment here,
    # so all are given; a cap of 1 chunk beyond it still gives the whole head).
    capped = list(chunks_.ordered_chunks(chunker, first, rest, max_chunks=1))
    assert {d.id for d, _ in capped} == {d.id for d in documents}


def test_the_extensions_pages_come_last_and_leave_the_others_order() -> None:
    documents = [
        Document(f"pkg/p{i}", f"p{i}", f"lists/p{i}", "package", "words " * 20, "")
        for i in range(30)
    ]
    more = [
        Document(f"html/{package}/{i}.html", "page", f"{package}/{i}.html", "html", "x", "")
        for i, package in enumerate(corpus.MORE_HTML_PACKAGES * 3)
    ]
    first, rest = chunks_.load_order(documents, {"pkg/p3"})
    first_more, rest_more = chunks_.load_order(documents + more, {"pkg/p3"})
    assert first_more == first
    assert rest_more[: len(rest)] == rest  # the other documents' order is kept
    assert sorted(d.id for d in rest_more[len(rest) :]) == sorted(d.id for d in more)
    assert all(corpus.in_extension(d) for d in more)
    assert not any(corpus.in_extension(d) for d in documents)
