"""The ingest benchmark's documents and the chunk texts the worker will embed for them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from benchmarks.prose import ProseModel
from tandem.config import WorkerSettings
from tandem.model_files import ModelKind, locate_prepared
from tandem.worker.chunking import Chunker
from tandem.worker.parsing import parse_document

# Words per document (about 1.3 tokens a word): "short" is one ~100-token chunk, as a note
# or a ticket; "long" is ~5k tokens, ~33 chunks of up to 256 (32 of them overlap).
PROFILES: dict[str, tuple[int, int]] = {"short": (65, 85), "long": (3700, 3900)}


@dataclass(frozen=True)
class GeneratedDocument:
    filename: str
    data: bytes  # Markdown: "# title", then paragraphs


def generate_documents(
    count: int,
    seed: int,
    profile: str = "short",
    model: ProseModel | None = None,
    name_prefix: str = "",
) -> list[GeneratedDocument]:
    """`name_prefix` keeps the files (document ids) of separate rounds apart."""
    prose = model or ProseModel.from_installed()
    low, high = PROFILES[profile]
    rng = random.Random(seed)
    documents = []
    for number in range(count):
        title, text = prose.document(rng, rng.randint(low, high))
        filename = f"{name_prefix}{profile}-{number:05d}.md"
        documents.append(GeneratedDocument(filename, f"# {title}\n\n{text}\n".encode()))
    return documents


def worker_chunk_texts(documents: list[GeneratedDocument]) -> list[str]:
    """Exactly what the worker sends to the indexing server for these files: the same
    parser, and the same chunker built from the same settings and prepared model."""
    settings = WorkerSettings()
    directory, _ = locate_prepared(
        settings.model_cache, settings.embedding_model, ModelKind.BI_ENCODER, need_weights=False
    )
    chunker = Chunker.from_model_dir(directory, overlap_tokens=settings.chunk_overlap_tokens)
    texts: list[str] = []
    for document in documents:
        parsed = parse_document(document.filename, document.data, None)
        texts.extend(chunk.embed_text for chunk in chunker.chunk(parsed))
    return texts
