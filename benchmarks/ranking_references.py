"""Reference rankings computed in-process, to hold Tandem's ranking against.

* BM25 with `bm25s`: k1 1.2, b 0.75, Lucene's idf ln(1 + (N - df + 0.5) / (df + 0.5))
  and term weight tf / (tf + k1 * (1 - b + b * dl / avgdl)) (Lucene leaves out the
  constant factor k1 + 1, which changes no ranking and no max-normalised score),
  English Snowball stemmer (PyStemmer), English stopwords, over title + text of each
  whole document (the text Tandem indexes). `bm25_chunks` is the same over Tandem's
  chunks (title + chunk), a document scoring its best chunk: what chunk-level BM25 can
  reach.
* Dense: exact cosine between the query vector and every chunk vector of the same model,
  a document scoring its best chunk (no approximate index).
* Fusions of those two over every document (`fusion_grid`, swept on the tuning half of
  a set by benchmarks/ranking_quality.py): reciprocal-rank fusion
  `2w / (k + rank_dense) + 2(1 - w) / (k + rank_bm25)` (w 0.5: the classic unweighted
  RRF; a document BM25 does not match gets nothing from its side) over k and w, and
  linear fusion `alpha * dense' + (1 - alpha) * bm25'` over alpha and three
  normalisations: `max` (cosine as is, bm25 / max bm25: what Tandem does), `minmax`
  (both scaled to [0, 1] over the documents) and `zscore` (both standardised).

`top`, `rrf` and `linear` return, per query, document indexes best first (the top
`depth`); `fused` returns a fusion's scores, `ranks_of` where given documents rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]

K1 = 1.2
B = 0.75
RRF_K = 60
LINEAR_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_LINEAR_ALPHA = 0.7
GRID_RRF_K = (1, 5, 10, 20, 30, 60, 100)
GRID_RRF_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
GRID_ALPHAS = tuple(round(0.05 * i, 2) for i in range(4, 20))  # 0.2 .. 0.95
NORMALISATIONS = ("max", "minmax", "zscore")
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ReferenceScores:
    """Per query (rows), per document (columns)."""

    bm25: Scores
    bm25_chunks: Scores
    dense: Scores


def bm25_scores(corpus: list[str], queries: list[str]) -> Scores:
    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
    retriever.index(tokens, show_progress=False)
    query_tokens = bm25s.tokenize(
        queries, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    scores = np.zeros((len(queries), len(corpus)), dtype=np.float32)
    for row, words in enumerate(query_tokens):
        known = [w for w in words if w in retriever.vocab_dict]
        if known:
            scores[row] = retriever.get_scores(known)
    return scores


def best_per_document(chunk_scores: Scores, chunk_document: npt.NDArray[np.int64]) -> Scores:
    """Max over each document's chunks; `chunk_document` (ascending) maps chunk -> document."""
    starts = np.flatnonzero(np.r_[True, chunk_document[1:] != chunk_document[:-1]])
    best: Scores = np.maximum.reduceat(chunk_scores, starts, axis=1)
    return best


def compute(
    document_texts: list[str],
    chunk_texts: list[str],
    chunk_document: npt.NDArray[np.int64],
    chunk_vectors: Scores,
    queries: list[str],
    query_vectors: Scores,
) -> ReferenceScores:
    """`document_texts`/`chunk_texts`: title + text; chunks grouped by document, in order."""
    dense = best_per_document(query_vectors @ chunk_vectors.T, chunk_document)
    chunks = best_per_document(bm25_scores(chunk_texts, queries), chunk_document)
    return ReferenceScores(bm25_scores(document_texts, queries), chunks, dense)


def top(scores: Scores, depth: int, require_positive: bool = False) -> list[list[int]]:
    """Document indexes by descending score (ties: lower index first), per query."""
    ranked: list[list[int]] = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))[:depth]
        ranked.append([int(i) for i in order if not require_positive or row[i] > 0])
    return ranked


def rank_matrix(scores: Scores) -> npt.NDArray[np.int64]:
    """Each document's rank (1 = best; ties: lower index first), per query."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks


def rrf_scores(
    bm25: Scores,
    dense: Scores,
    k: int = RRF_K,
    weight: float = 0.5,
    ranks: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> Scores:
    """Weighted reciprocal-rank fusion (`weight` on the dense side; 0.5: sum of
    1 / (k + rank)); documents BM25 does not match (score 0) get nothing from its side.
    `ranks`: (BM25's, dense's) rank matrices, when already computed."""
    bm25_ranks, dense_ranks = ranks or (rank_matrix(bm25), rank_matrix(dense))
    keyword_part = np.where(bm25 > 0, 2 * (1 - weight) / (k + bm25_ranks), 0.0)
    fused: Scores = (keyword_part + 2 * weight / (k + dense_ranks)).astype(np.float32)
    return fused


def normalised(scores: Scores, normalisation: str, *, keyword: bool) -> Scores:
    """`scores` shifted and divided per query (row) as `normalisation` says."""
    if normalisation == "max":
        if not keyword:
            return scores
        shifted, scale = scores, scores.max(axis=1, keepdims=True)
    elif normalisation == "minmax":
        low = scores.min(axis=1, keepdims=True)
        shifted, scale = scores - low, scores.max(axis=1, keepdims=True) - low
    elif normalisation == "zscore":
        shifted, scale = (
            scores - scores.mean(axis=1, keepdims=True),
            scores.std(axis=1, keepdims=True),
        )
    else:
        raise ValueError(f"unknown normalisation {normalisation!r}")
    found: Scores = np.divide(shifted, scale, out=np.zeros_like(scores), where=scale > 0)
    return found


def linear_scores(bm25: Scores, dense: Scores, alpha: float, normalisation: str = "max") -> Scores:
    blended: Scores = alpha * normalised(dense, normalisation, keyword=False) + (
        1 - alpha
    ) * normalised(bm25, normalisation, keyword=True)
    return blended


def rrf(bm25: Scores, dense: Scores, depth: int) -> list[list[int]]:
    """Reciprocal-rank fusion at k 60, unweighted, as rankings."""
    return top(rrf_scores(bm25, dense), depth)


def linear(bm25: Scores, dense: Scores, alpha: float, depth: int) -> list[list[int]]:
    """Linear fusion with `max` normalisation, as rankings."""
    return top(linear_scores(bm25, dense, alpha), depth)


@dataclass(frozen=True)
class ReferenceFusion:
    name: str
    method: str  # "rrf" or "linear"
    weight: float  # of the dense side: RRF's w, linear's alpha
    k: int | None = None  # RRF only
    normalisation: str | None = None  # linear only

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "weight": self.weight,
            "k": self.k,
            "normalisation": self.normalisation,
        }


def fusion_grid() -> list[ReferenceFusion]:
    grid = [
        ReferenceFusion(f"reference-rrf-k{k}-w{w}", "rrf", w, k=k)
        for k in GRID_RRF_K
        for w in GRID_RRF_WEIGHTS
    ]
    grid += [
        ReferenceFusion(f"reference-linear-{n}-{a}", "linear", a, normalisation=n)
        for n in NORMALISATIONS
        for a in GRID_ALPHAS
    ]
    return grid


class Fuser:
    """Fused scores of one set's references, with BM25's and dense's ranks computed once."""

    def __init__(self, scores: ReferenceScores) -> None:
        self._scores = scores
        self._ranks = (rank_matrix(scores.bm25), rank_matrix(scores.dense))

    def fused(self, fusion: ReferenceFusion) -> Scores:
        bm25, dense = self._scores.bm25, self._scores.dense
        if fusion.method == "rrf":
            return rrf_scores(bm25, dense, fusion.k or RRF_K, fusion.weight, self._ranks)
        return linear_scores(bm25, dense, fusion.weight, fusion.normalisation or "max")


def ranks_of(
    scores: Scores, relevant: list[list[int]], require_positive: bool = False
) -> list[list[int | None]]:
    """Per query, the rank of each of its `relevant` documents under `scores` (ties:
    lower index first, as `top`); None for one scoring 0 when `require_positive`."""
    found: list[list[int | None]] = []
    for row, documents in zip(scores, relevant, strict=True):
        ranks: list[int | None] = []
        for document in documents:
            value = row[document]
            if require_positive and value <= 0:
                ranks.append(None)
                continue
            ahead = int(np.count_nonzero(row > value))
            tied = int(np.count_nonzero(row[:document] == value))
            ranks.append(1 + ahead + tied)
        found.append(ranks)
    return found


def rankings(scores: ReferenceScores, depth: int) -> dict[str, list[list[int]]]:
    """Every reference configuration's rankings, by name."""
    found = {
        "reference-bm25": top(scores.bm25, depth, require_positive=True),
        "reference-bm25-chunks": top(scores.bm25_chunks, depth, require_positive=True),
        "reference-dense": top(scores.dense, depth),
        "reference-rrf": rrf(scores.bm25, scores.dense, depth),
    }
    for alpha in LINEAR_ALPHAS:
        found[f"reference-linear-{alpha}"] = linear(scores.bm25, scores.dense, alpha, depth)
    return found
