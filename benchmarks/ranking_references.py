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
* Reciprocal-rank fusion of those two (k 60) and linear fusion
  `alpha * cosine + (1 - alpha) * bm25 / max(bm25)`, over every document.

Every function returns, per query, document indexes best first (the top `depth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]

K1 = 1.2
B = 0.75
RRF_K = 60
LINEAR_ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_LINEAR_ALPHA = 0.7
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


def rrf(bm25: Scores, dense: Scores, depth: int) -> list[list[int]]:
    """Reciprocal-rank fusion: sum of 1 / (k + rank) over both rankings; documents that
    BM25 does not match at all (score 0) get nothing from its side."""
    fused = np.zeros_like(bm25)
    for scores, matched in ((bm25, bm25 > 0), (dense, np.ones_like(dense, dtype=bool))):
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
        fused += np.where(matched, 1.0 / (RRF_K + ranks), 0.0).astype(np.float32)
    return top(fused, depth)


def linear(bm25: Scores, dense: Scores, alpha: float, depth: int) -> list[list[int]]:
    top_bm25 = bm25.max(axis=1, keepdims=True)
    scaled = np.divide(bm25, top_bm25, out=np.zeros_like(bm25), where=top_bm25 > 0)
    return top(alpha * dense + (1 - alpha) * scaled, depth)


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
