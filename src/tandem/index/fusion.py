"""Fusing the vector and keyword candidate lists into one ranking.

Every candidate carries both scores (the retrieval layer scores the vector candidates'
BM25 and the keyword candidates' cosine), so the blend compares like with like instead of
treating "not in the other top-k" as zero.

* ``linear`` (default): ``alpha * cosine + (1 - alpha) * bm25 / max(bm25)`` — a tunable
  alpha (Onyx: 0.5; Tandem: see protocol.DEFAULT_HYBRID_ALPHA); BM25 scores are scaled
  into [0, 1] per query by the best candidate's.
* ``rrf``: reciprocal-rank fusion, ``sum 1 / (k + rank)``; ignores score magnitudes.
Measured side by side in benchmarks/retrieval_quality.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

RRF_K = 60


class Fusion(StrEnum):
    LINEAR = "linear"
    RRF = "rrf"


@dataclass(frozen=True, slots=True)
class Candidate:
    key: int  # the chunk's id
    vector_score: float | None
    keyword_score: float | None
    score: float = 0.0


def _ranks(candidates: Sequence[Candidate], attr: str) -> dict[int, int]:
    scored = [c for c in candidates if getattr(c, attr) is not None]
    scored.sort(key=lambda c: getattr(c, attr), reverse=True)
    return {c.key: rank for rank, c in enumerate(scored, start=1)}


def _rrf_term(rank: int | None, weight: float) -> float:
    # Weighted so that alpha = 0.5 gives the classic unweighted RRF.
    return 0.0 if rank is None else 2 * weight / (RRF_K + rank)


def fuse(pool: Sequence[Candidate], *, alpha: float, method: Fusion) -> list[Candidate]:
    """The candidates (distinct keys) ranked by their fused score, best first."""
    if method is Fusion.RRF:
        vector_ranks, keyword_ranks = _ranks(pool, "vector_score"), _ranks(pool, "keyword_score")
        fused = [
            replace(
                c,
                score=_rrf_term(vector_ranks.get(c.key), alpha)
                + _rrf_term(keyword_ranks.get(c.key), 1 - alpha),
            )
            for c in pool
        ]
    else:
        top_keyword = max((c.keyword_score or 0.0 for c in pool), default=0.0)
        fused = [
            replace(
                c,
                score=alpha * (c.vector_score or 0.0)
                + (1 - alpha) * ((c.keyword_score or 0.0) / top_keyword if top_keyword else 0.0),
            )
            for c in pool
        ]
    fused.sort(key=lambda c: (-c.score, c.key))
    return fused
