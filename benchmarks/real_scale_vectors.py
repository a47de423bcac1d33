"""Vectors for the scale corpus: real int8 embeddings where the cache has them, borrowed
ones beyond.

`python -m benchmarks.real_scale_vectors --seconds S` embeds, with Tandem's int8 model in
this process, into benchmarks/embedding_cache.py's disk cache: first every chunk of the
query targets, then the chunks in load order (benchmarks/real_scale_chunks.py), at least
`--first` of them, then for as long as S seconds allow. Run it at idle priority; a re-run
embeds only what the cache lacks.

A chunk whose text has no cached vector borrows one: donor = a real chunk drawn by a
generator seeded with BORROW_SEED and the chunk's position in the load order, vector =
donor's real vector + Gaussian noise with standard deviation NOISE / sqrt(dimensions) per
component (a noise vector of norm about NOISE), renormalised; its cosine with the donor is
then about 1 / sqrt(1 + NOISE^2) = 0.89. Donors are drawn from the real vectors of the
same load (the size's own real chunks), so no two chunks share a vector.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from benchmarks import real_scale_chunks as chunks_
from benchmarks import real_scale_corpus as corpus
from benchmarks.embedding_cache import SEGMENT_SIZE, CachedEmbedder
from tandem.model_files import Precision

Matrix = npt.NDArray[np.float32]
NOISE = 0.5
EMBED_CALL = 256  # texts per call: each call's vectors are saved before the next
BORROW_SEED = 22
RULE = (
    "borrowed vector = real vector of a donor chunk (uniform among the size's real-vector "
    "chunks, numpy default_rng([22, position])) + N(0, (0.5/sqrt(d))^2) per component, "
    "renormalised"
)


class ScaleEmbedder(CachedEmbedder):
    def cached(self, texts: list[str]) -> list[npt.NDArray[np.float32] | None]:
        """Each text's cached vector, None where the cache has none (nothing is embedded)."""
        return [self._known.get(self._digest(t)) for t in texts]


def embedder(cache_dir: Path) -> ScaleEmbedder:
    return ScaleEmbedder(cache_dir, threads=2, precision=Precision.INT8)


def embed_in_order(directory: Path, cache_dir: Path, seconds: float, first: int) -> int:
    """Embed the query targets' chunks first, then chunks in load order: the first `first`
    whatever it takes, then until `seconds` have passed (counted from the start). Saved
    every EMBED_CALL texts. Returns how many texts were embedded or found cached."""
    model = embedder(cache_dir)
    started = time.perf_counter()
    description = orjson.loads((directory / "corpus.json").read_bytes())
    targets = {q["relevant"] for q in description["queries"]}
    head: list[str] = []
    rest: list[str] = []
    for row, chunks in chunks_.read_chunks(directory, chunks_.MAX_CHUNKS, partial=True):
        (head if row["id"] in targets else rest).extend(c.embed_text for c in chunks)
    ordered = head + rest
    done = 0
    for start in range(0, len(ordered), EMBED_CALL):
        elapsed = time.perf_counter() - started
        if done >= max(first, len(head)) and elapsed > seconds:
            break
        model.embed(ordered[start : start + EMBED_CALL])
        done = min(start + EMBED_CALL, len(ordered))
        print(f"  {done} real ({len(head)} of query targets), {elapsed:.0f} s", flush=True)
    return done


def vectors_for(
    model: ScaleEmbedder, embed_texts: list[str], first_position: int, donors: Matrix | None
) -> tuple[Matrix, int]:
    """Vectors for chunks at load positions first_position..., and how many are real.
    `donors`: the real vectors borrowed from (None: this batch's own real vectors)."""
    found = model.cached(embed_texts)
    real = [v for v in found if v is not None]
    pool = donors if donors is not None else np.stack(real) if real else None
    rows: list[npt.NDArray[np.float32]] = []
    for offset, vector in enumerate(found):
        if vector is not None:
            rows.append(vector.astype(np.float32))
            continue
        if pool is None:
            raise SystemExit("no real vectors to borrow from: run benchmarks.real_scale_vectors")
        rng = np.random.default_rng([BORROW_SEED, first_position + offset])
        donor = pool[int(rng.integers(len(pool)))]
        noisy = donor + NOISE * rng.standard_normal(donor.shape[0]) / np.sqrt(donor.shape[0])
        rows.append((noisy / np.linalg.norm(noisy)).astype(np.float32))
    return np.stack(rows), len(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=corpus.default_cache_dir())
    parser.add_argument("--seconds", type=float, default=1200.0)
    # The first segment of the load order holds every query target; it ends a little
    # past FIRST_SIZE (its last document's chunks), so the default is a margin beyond.
    parser.add_argument("--first", type=int, default=chunks_.FIRST_SIZE + 4 * SEGMENT_SIZE)
    args = parser.parse_args()
    directory = args.cache_dir / f"corpus-v{corpus.FORMAT_VERSION}"
    real = embed_in_order(directory, args.cache_dir, args.seconds, args.first)
    print(f"{real} chunks have real vectors")


if __name__ == "__main__":
    main()
