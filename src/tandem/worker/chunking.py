"""Split a ParsedDocument into chunks that each fit the embedding model's context.

Every chunk is embedded as ``title + "\\n" + body`` so the document's title travels with
each piece. Token budget, per document: ``chunk_tokens`` minus the measured cost of the
special tokens ([CLS]/[SEP]) and the title prefix is the body budget. semantic-text-splitter
cuts the text into semantic "cores" of at most ``body budget - overlap_tokens`` tokens; each
chunk is then its core plus the whole-word tail (at most ``overlap_tokens`` tokens) of the
previous core. Finally each embed text is re-tokenized and, should a tokenizer not be
additive across those joins, bisected on token boundaries until it fits. So the model never
truncates a chunk, and every chunk body is an exact span of the document text.

Counting is most of the chunker's cost (a short document is one chunk, so its counts are
all the work). With a tokenizer whose tokens never span whitespace (BERT's pre-tokenizer,
char-wise normalizer), counts add up across the title's "\n" join: one encoding of the
whole embed text gives the title's count (tokens ending inside it), the prefix's and the
body's, exactly what encoding each of them alone gives. A document that fits in one chunk
then costs one encoding instead of four.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from semantic_text_splitter import MarkdownSplitter, TextSplitter
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from tandem.documents.parsed import ContentType, ParsedDocument
from tandem.model_files import TOKENIZER_FILE, ModelManifest

DEFAULT_CHUNK_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
DEFAULT_OVERLAP_TOKENS = 32
_MIN_BODY_TOKENS = 16
# Cores this short (in characters) are candidates for merging forward; see _merge_fragments.
_FRAGMENT_CHARS = 160


@dataclass(frozen=True, slots=True)
class TextChunk:
    ordinal: int
    text: str  # the body, exactly doc.text[start:end]
    title: str
    path: str
    token_count: int  # tokens of embed_text, special tokens included
    embed_text: str  # what gets embedded: title + "\n" + body
    start: int  # character offsets of the body in ParsedDocument.text
    end: int


@dataclass(frozen=True, slots=True)
class _Counted:
    """One encoding of ``title + "\n" + body``, read apart (additive tokenizers only)."""

    title: str
    prefix_tokens: int  # special tokens included, as count_tokens(prefix) answers
    body_tokens: int
    total_tokens: int


def counts_add_up(tokenizer: Tokenizer) -> bool:
    """Whether a token never spans whitespace and each character normalizes on its own:
    then the tokens of ``a + "\n" + b`` are a's then b's (plus the special tokens)."""
    normalizer = tokenizer.normalizer
    return isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer) and (
        normalizer is None or isinstance(normalizer, normalizers.BertNormalizer)
    )


class Chunker:
    """Token-aware chunking with the embedding model's own tokenizer. Deterministic."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        one_encoding: bool | None = None,
    ) -> None:
        """`one_encoding`: count a document's title and body from one encoding (None: when
        the tokenizer's counts add up; False: encode each part alone, the reference)."""
        if chunk_tokens < 4 * _MIN_BODY_TOKENS:
            raise ValueError(f"chunk_tokens must be at least {4 * _MIN_BODY_TOKENS}")
        if not 0 <= overlap_tokens < chunk_tokens // 2:
            raise ValueError("overlap_tokens must be >= 0 and less than half of chunk_tokens")
        # A private copy: the caller's tokenizer may truncate or pad (the model server's
        # does), which would make counts lie; and we must not change its settings.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        # The title may take at most a quarter of the window; the rest is for the body.
        self.max_title_tokens = chunk_tokens // 4
        self._specials = len(self._tokenizer.encode("").ids)
        additive = counts_add_up(self._tokenizer)
        self._one_encoding = additive if one_encoding is None else one_encoding and additive
        self._splitters: dict[tuple[bool, int], TextSplitter | MarkdownSplitter] = {}
        vocabulary = hashlib.sha256(self._tokenizer.to_str().encode()).hexdigest()[:16]
        # What decides the chunks besides the text: part of a document's content hash, so
        # changing any of it re-chunks documents instead of calling them unchanged.
        self.fingerprint = f"{vocabulary}/{chunk_tokens}/{overlap_tokens}"

    @classmethod
    def from_model_dir(
        cls, directory: Path, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    ) -> Chunker:
        """For a prepared model directory: its tokenizer, its max_seq_length as the window."""
        manifest = ModelManifest.read(directory)
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        return cls(tokenizer, manifest.max_seq_length, overlap_tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included."""
        return len(self._tokenizer.encode(text).ids)

    def chunk(self, doc: ParsedDocument) -> list[TextChunk]:
        if not doc.text.strip():
            return []
        whole = doc.text.strip()
        lead = len(doc.text) - len(doc.text.lstrip())
        counted = self._count_at_once(doc.title, whole) if self._one_encoding else None
        if counted is None:
            title = self._fit_title(doc.title)
            prefix = f"{title}\n" if title else ""
            # Measured, not assumed: specials plus whatever the prefix costs here.
            prefix_tokens = self.count_tokens(prefix)
        else:
            title, prefix_tokens = counted.title, counted.prefix_tokens
            prefix = f"{title}\n" if title else ""
        budget = self.chunk_tokens - prefix_tokens
        markdown = doc.content_type == ContentType.MARKDOWN
        capacity = budget - self.overlap_tokens
        body_tokens = self._count_body(whole) if counted is None else counted.body_tokens
        if counted is not None and body_tokens <= capacity:
            # The one encoding counted the embed text too: nothing more to tokenize.
            return [self._chunk(doc, title, prefix, lead, whole, counted.total_tokens)]
        if body_tokens <= capacity:
            # What the splitter answers for a text that fits, without building a splitter
            # (tens of ms each) or tokenizing twice more: most documents are short.
            cores = [(lead, whole)]
        else:
            cores = self._splitter(markdown, capacity).chunk_indices(doc.text)
            cores = self._merge_fragments(doc.text, cores, capacity)
        spans = [(start, doc.text[start:end]) for start, end in self._overlapped(cores)]
        encodings = self._tokenizer.encode_batch([prefix + body for _, body in spans])
        pieces: list[tuple[int, str, int]] = []
        for (start, body), encoding in zip(spans, encodings, strict=True):
            if len(encoding.ids) <= self.chunk_tokens:
                pieces.append((start, body, len(encoding.ids)))
            else:
                pieces.extend(self._bisect(prefix, start, body))
        return [
            self._chunk(doc, title, prefix, start, body, count, ordinal=ordinal)
            for ordinal, (start, body, count) in enumerate(pieces)
        ]

    def _count_at_once(self, raw_title: str, body: str) -> _Counted | None:
        """Title, prefix and body counts from one encoding of the embed text; None when
        the title is over its share (it is cut by _fit_title's own encoding)."""
        title = " ".join(raw_title.split())
        prefix = f"{title}\n" if title else ""
        encoding = self._tokenizer.encode(prefix + body)
        total = len(encoding.ids)
        # Offsets are spans of the input: the title's tokens end within it.
        title_tokens = (
            sum(
                1
                for (_, end), special in zip(
                    encoding.offsets, encoding.special_tokens_mask, strict=True
                )
                if not special and end <= len(title)
            )
            if title
            else 0
        )
        if title_tokens > self.max_title_tokens:
            return None
        prefix_tokens = title_tokens + self._specials
        return _Counted(title, prefix_tokens, total - prefix_tokens, total)

    @staticmethod
    def _chunk(
        doc: ParsedDocument,
        title: str,
        prefix: str,
        start: int,
        body: str,
        tokens: int,
        *,
        ordinal: int = 0,
    ) -> TextChunk:
        return TextChunk(
            ordinal=ordinal,
            text=body,
            title=title,
            path=doc.path,
            token_count=tokens,
            embed_text=prefix + body,
            start=start,
            end=start + len(body),
        )

    def _splitter(self, markdown: bool, budget: int) -> TextSplitter | MarkdownSplitter:
        # Budgets vary only with title length (bounded), so this cache stays small.
        key = (markdown, budget)
        splitter = self._splitters.get(key)
        if splitter is None:
            factory = MarkdownSplitter if markdown else TextSplitter
            splitter = factory.from_huggingface_tokenizer(self._tokenizer, capacity=budget)
            self._splitters[key] = splitter
        return splitter

    def _merge_fragments(
        self, text: str, cores: list[tuple[int, str]], capacity: int
    ) -> list[tuple[int, str]]:
        """Join a tiny core to the next one when both fit in one chunk.

        The splitter emits a heading (or a short line) alone when the section after it is
        too big to share its chunk; embedded alone, such a fragment is noise."""
        merged: list[tuple[int, str]] = []
        pending: tuple[int, str] | None = None
        for start, body in cores:
            if pending is not None:
                joined = text[pending[0] : start + len(body)]
                if self._count_body(joined) <= capacity:
                    start, body = pending[0], joined
                else:
                    merged.append(pending)
                pending = None
            if len(body) < _FRAGMENT_CHARS and self._count_body(body) < _MIN_BODY_TOKENS:
                pending = (start, body)
            else:
                merged.append((start, body))
        if pending is not None:
            merged.append(pending)
        return merged

    def _count_body(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _overlapped(self, cores: list[tuple[int, str]]) -> list[tuple[int, int]]:
        """(start, end) per chunk: each core, extended back over the previous core's tail.

        The splitter's own overlap is best-effort (whole semantic units only, so often none
        after a long sentence); this one is guaranteed whenever the previous core has more
        than one token."""
        if not self.overlap_tokens or len(cores) < 2:
            return [(start, start + len(body)) for start, body in cores]
        encodings = self._tokenizer.encode_batch(
            [body for _, body in cores], add_special_tokens=False
        )
        spans: list[tuple[int, int]] = []
        for index, (start, body) in enumerate(cores):
            begin = start
            if index > 0:
                previous_start, previous_body = cores[index - 1]
                tail = self._tail_start(previous_body, encodings[index - 1].offsets)
                begin = previous_start + tail if tail is not None else start
            spans.append((begin, start + len(body)))
        return spans

    def _tail_start(self, body: str, offsets: list[tuple[int, int]]) -> int | None:
        """Where the last <= overlap_tokens tokens of `body` begin, preferring whole words;
        never the body's first token, so chunk starts stay strictly increasing."""
        first = max(1, len(offsets) - self.overlap_tokens)
        starts = [s for s, _ in offsets[first:] if 0 < s < len(body)]
        if not starts:
            return None
        return next((s for s in starts if body[s - 1].isspace()), starts[0])

    def _fit_title(self, title: str) -> str:
        """The title, cut on a token boundary to at most max_title_tokens."""
        title = " ".join(title.split())
        encoding = self._tokenizer.encode(title, add_special_tokens=False)
        if len(encoding.ids) <= self.max_title_tokens:
            return title
        return title[: encoding.offsets[self.max_title_tokens - 1][1]].rstrip()

    def _bisect(self, prefix: str, start: int, body: str) -> list[tuple[int, str, int]]:
        """A body whose embed text is over budget, cut on token boundaries until each fits.

        The splitter counts the body alone; this only runs if a tokenizer is not additive
        across the title join."""
        count = self.count_tokens(prefix + body)
        if count <= self.chunk_tokens:
            return [(start, body, count)]
        offsets = self._tokenizer.encode(body, add_special_tokens=False).offsets
        starts = [s for s, _ in offsets if 0 < s < len(body)]
        if not starts:
            raise ValueError(f"a single token does not fit in {self.chunk_tokens} tokens")
        # From the middle on, the first cut between words; a token boundary inside a word
        # only if the second half has no whitespace at all.
        middle = starts[len(starts) // 2 :]
        cut = next((s for s in middle if body[s - 1].isspace()), middle[0])
        head, tail = body[:cut].rstrip(), body[cut:]
        tail_start = start + cut + len(tail) - len(tail.lstrip())
        return self._bisect(prefix, start, head) + self._bisect(prefix, tail_start, tail.strip())
