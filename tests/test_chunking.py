"""Chunking with the real embedding tokenizer: every chunk fits, covers the text, overlaps."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tandem.config_fields import DEFAULT_EMBEDDING_MODEL
from tandem.model_files import TOKENIZER_FILE
from tandem.worker.chunking import Chunker, TextChunk
from tandem.worker.parsing import ContentType, ParsedDocument, parse_document

WINDOW = 256


@pytest.fixture(scope="module")
def tokenizer(model_cache: Path) -> Tokenizer:
    """Configured like the model server's: truncating at the model's window."""
    tokenizer = Tokenizer.from_file(str(model_cache / DEFAULT_EMBEDDING_MODEL / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=WINDOW)
    return tokenizer


@pytest.fixture(scope="module")
def chunker(model_cache: Path) -> Chunker:
    return Chunker.from_model_dir(model_cache / DEFAULT_EMBEDDING_MODEL)


@pytest.fixture(scope="module")
def counter(model_cache: Path) -> Tokenizer:
    """An untruncated tokenizer to check counts independently of the chunker."""
    return Tokenizer.from_file(str(model_cache / DEFAULT_EMBEDDING_MODEL / TOKENIZER_FILE))


def prose(paragraphs: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    vocabulary = [
        *("the", "index", "stores", "vectors", "for", "each", "chunk", "so", "search", "can"),
        *("rank", "passages", "by", "meaning", "workers", "parse", "uploads", "and", "model"),
        *("server", "embeds", "them", "in", "batches", "while", "queries", "wait"),
    ]
    sentences = (
        " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 30))).capitalize() + "."
        for _ in range(paragraphs * 4)
    )
    body = list(sentences)
    return "\n\n".join(" ".join(body[i : i + 4]) for i in range(0, len(body), 4))


def doc(text: str, title: str = "Design Notes", content_type: str = "text/plain") -> ParsedDocument:
    return ParsedDocument(
        title=title, text=text, path="notes.txt", content_type=content_type, metadata={}
    )


def check(document: ParsedDocument, chunks: list[TextChunk], counter: Tokenizer) -> None:
    """The guarantees: fits the window, exact spans in order, full coverage, consistent."""
    assert chunks, "a non-empty document must give chunks"
    covered = bytearray(len(document.text))
    previous: TextChunk | None = None
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.text.strip() and chunk.text == document.text[chunk.start : chunk.end]
        assert chunk.embed_text == f"{chunk.title}\n{chunk.text}"
        assert chunk.path == document.path
        tokens = len(counter.encode(chunk.embed_text).ids)  # special tokens included
        assert tokens == chunk.token_count <= WINDOW
        if previous is not None:
            assert previous.start < chunk.start and previous.end < chunk.end
        covered[chunk.start : chunk.end] = b"\x01" * len(chunk.text)
        previous = chunk
    missed = [i for i, ch in enumerate(document.text) if not covered[i] and not ch.isspace()]
    assert not missed, f"text not covered by any chunk at {missed[:5]}"


ADVERSARIAL = {
    "prose": prose(60),
    "giant word": "x" * 50_000,
    "no whitespace": "token,split;on:punctuation!" * 2_000,
    "digits": "3141592653" * 5_000,
    "cjk": "検索システムは文書を分割してから埋め込みます。" * 600,
    "many newlines": "\n" * 3_000 + "start" + "\n\n\n".join(["line"] * 2_000) + "\n" * 3_000,
    "emoji and combining": ("👩‍👩‍👧‍👦 e\u0301te\u0301 ✈️ " * 1_500),
    "mixed scripts": "Ελληνικά русский עברית العربية हिन्दी ไทย 한국어 " * 400,
    "one long line": " ".join(["word"] * 20_000),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_every_chunk_fits_and_covers_the_text(
    name: str, chunker: Chunker, counter: Tokenizer
) -> None:
    document = doc(ADVERSARIAL[name])
    check(document, chunker.chunk(document), counter)


def test_long_title_is_cut_on_a_token_boundary(chunker: Chunker, counter: Tokenizer) -> None:
    document = doc(prose(10), title="Extraordinarily " * 200)
    chunks = chunker.chunk(document)
    check(document, chunks, counter)
    title_tokens = len(counter.encode(chunks[0].title, add_special_tokens=False).ids)
    assert title_tokens == chunker.max_title_tokens == WINDOW // 4
    assert all(c.title == chunks[0].title for c in chunks)


def test_chunks_use_most_of_the_window(chunker: Chunker, counter: Tokenizer) -> None:
    chunks = chunker.chunk(doc(prose(60)))
    assert len(chunks) > 5
    # Paragraph boundaries cost some room; all but the last should still be well filled.
    assert all(c.token_count > WINDOW // 2 for c in chunks[:-1])


def test_consecutive_chunks_overlap_when_configured(chunker: Chunker, counter: Tokenizer) -> None:
    text = " ".join(prose(40).split())  # one paragraph, so only the budget forces cuts
    chunks = chunker.chunk(doc(text))
    assert len(chunks) > 3
    for previous, current in itertools.pairwise(chunks):
        shared = text[current.start : previous.end]
        assert shared.strip(), "consecutive chunks must share text"
        assert len(counter.encode(shared, add_special_tokens=False).ids) <= chunker.overlap_tokens


def test_no_overlap_when_disabled(counter: Tokenizer, tokenizer: Tokenizer) -> None:
    document = doc(" ".join(prose(40).split()))
    chunks = Chunker(tokenizer, overlap_tokens=0).chunk(document)
    check(document, chunks, counter)
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \r\n"])
def test_blank_text_gives_no_chunks(text: str, chunker: Chunker) -> None:
    assert chunker.chunk(doc(text)) == []


def test_short_document_is_one_chunk(chunker: Chunker) -> None:
    [chunk] = chunker.chunk(doc("  Tandem splits documents.  ", title="Intro"))
    assert (chunk.text, chunk.embed_text, chunk.start) == (
        "Tandem splits documents.",
        "Intro\nTandem splits documents.",
        2,
    )


def test_deterministic(chunker: Chunker, tokenizer: Tokenizer) -> None:
    document = doc(prose(30, seed=3) + "\n\n" + ADVERSARIAL["cjk"][:2_000])
    first = chunker.chunk(document)
    assert chunker.chunk(document) == first
    assert Chunker(tokenizer).chunk(document) == first


def test_callers_tokenizer_is_left_alone(tokenizer: Tokenizer, counter: Tokenizer) -> None:
    chunks = Chunker(tokenizer, chunk_tokens=WINDOW).chunk(doc(prose(20)))
    assert tokenizer.truncation is not None and tokenizer.truncation["max_length"] == WINDOW
    assert all(len(counter.encode(c.embed_text).ids) == c.token_count for c in chunks)


def test_markdown_is_split_at_headings(tokenizer: Tokenizer, counter: Tokenizer) -> None:
    sections = [f"## Section {n}\n\n{prose(3, seed=n)}" for n in range(6)]
    document = doc("# Guide\n\n" + "\n\n".join(sections), content_type=ContentType.MARKDOWN)
    chunks = Chunker(tokenizer, overlap_tokens=0).chunk(document)
    check(document, chunks, counter)
    # The lone "# Guide" the splitter emits (section 0 is too big to join it) is merged on.
    assert chunks[0].text.startswith("# Guide\n\n## Section 0\n\n")
    for chunk in chunks:
        if "## Section" in chunk.text:
            # A section never starts in the middle of a chunk that began in another section.
            assert chunk.text.startswith(("## Section", "# Guide"))


def test_parsed_document_end_to_end(chunker: Chunker, counter: Tokenizer) -> None:
    source = ("# Operations Manual\n\n" + prose(30)).encode()
    document = parse_document("manual.md", source)
    chunks = chunker.chunk(document)
    check(document, chunks, counter)
    assert {c.title for c in chunks} == {"Operations Manual"}
    assert all(c.embed_text.startswith("Operations Manual\n") for c in chunks)


def test_bisect_fallback_fits_an_oversized_body(chunker: Chunker, counter: Tokenizer) -> None:
    # The splitter never hands over an oversized body with this tokenizer, so drive the
    # fallback directly: it must cut on token boundaries and keep exact spans.
    text = "  " + ADVERSARIAL["prose"][:20_000]
    body = text.strip()
    pieces = chunker._bisect("Title\n", 2, body)
    assert len(pieces) > 1
    for start, piece, count in pieces:
        assert text[start : start + len(piece)] == piece
        assert count == len(counter.encode("Title\n" + piece).ids) <= WINDOW
    assert " ".join(p for _, p, _ in pieces).split() == body.split()


@pytest.mark.parametrize(("chunk_tokens", "overlap"), [(32, 0), (256, 128), (256, -1)])
def test_rejects_bad_settings(tokenizer: Tokenizer, chunk_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        Chunker(tokenizer, chunk_tokens=chunk_tokens, overlap_tokens=overlap)


def test_from_model_dir_uses_the_manifest_window(chunker: Chunker) -> None:
    assert (chunker.chunk_tokens, chunker.overlap_tokens) == (WINDOW, 32)


ONE_ENCODING_CASES = [
    ("Design Notes", "A short note about the index."),
    ("", "No title, one sentence."),
    ("  Spaced\ttitle\n with  breaks ", "Héllo wörld, naïve café — accents and punctuation!"),
    ("Runbook", prose(1)),  # one chunk
    ("Runbook", prose(2)),  # about the window: either side of the capacity
    ("Runbook", prose(12)),  # many chunks
    ("word " * 200, "A title far over its quarter of the window."),
    ("x" * 3000, "A title that is one huge token run."),
    ("日本語のタイトル", "中文文本和日本語の文章が混ざった本文です。" * 30),
    ("Tabs", "col1\tcol2\tcol3\n" * 60),
]


@pytest.mark.parametrize(("title", "text"), ONE_ENCODING_CASES)
@pytest.mark.parametrize("content_type", ["text/plain", ContentType.MARKDOWN])
def test_one_encoding_gives_the_reference_chunks(
    tokenizer: Tokenizer, title: str, text: str, content_type: str
) -> None:
    """Counting title and body from one encoding changes no chunk: the same texts, spans
    and token counts as encoding each part alone."""
    fast = Chunker(tokenizer)
    reference = Chunker(tokenizer, one_encoding=False)
    assert fast._one_encoding and not reference._one_encoding
    document = doc(text, title=title, content_type=content_type)
    assert fast.chunk(document) == reference.chunk(document)


def test_one_encoding_only_where_counts_add_up(model_cache: Path) -> None:
    """A byte-level BPE tokenizer (tokens may carry the space before them) keeps the
    reference path even when asked."""
    from tokenizers import models, pre_tokenizers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    assert not Chunker(bpe, one_encoding=True)._one_encoding
