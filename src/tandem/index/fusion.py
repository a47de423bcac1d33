"""Fusing the vector and keyword candidate lists into one ranking.

Both retrievers report both scores for every candidate they return (the vector query
also computes the keyword rank and vice versa), so the blend compares like with like
instead of treating "not in the other top-k" as zero.

* ``linear`` (default): ``alpha * cosine + (1 - alpha) * keyword / max(keyword)`` — a
  tunable alpha (Onyx: 0.5; Tandem: 0.7, see protocol.DEFAULT_HYBRID_ALPHA); keyword
  scores are scaled into [0, 1] per query.
* ``rrf``: reciprocal-rank fusion, ``sum 1 / (k + rank)``; ignores score magnitudes.
Measured side by side in benchmarks/retrieval_quality.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

RRF_K = 60


class Fusion(StrEnum):
    LINEAR = "linear"
    RRF = "rrf"


@dataclass(frozen=True, slots=True)
class Candidate:
    key: tuple[str, int]  # (document id, ordinal)
    vector_score: float | None
    keyword_score: float | None
    payload: object = None
    score: float = 0.0


def _ranks(candidates: list[Candidate], attr: str) -> dict[tuple[str, int], int]:
    scored = [c for c in candidates if getattr(c, attr) is not None]
    scored.sort(key=lambda c: getattr(c, attr), reverse=True)
    return {c.key: rank for rank, c in enumerate(scored, start=1)}


def _rrf_term(rank: int | None, weight: float) -> float:
    # Weighted so that alpha = 0.5 gives the classic unweighted RRF.
    return 0.0 if rank is None else 2 * weight / (RRF_K + rank)


def fuse(
    vector: Iterable[Candidate], keyword: Iterable[Candidate], *, alpha: float, method: Fusion
) -> list[Candidate]:
    merged: dict[tuple[str, int], Candidate] = {}
    for candidate in (*vector, *keyword):
        merged.setdefault(candidate.key, candidate)
    pool = list(merged.values())
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
