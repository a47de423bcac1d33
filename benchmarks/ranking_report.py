"""What ranking_quality reports of one set: per-query scores, the choices made on the
tuning half, and the issue's targets on the held-out half with paired bootstrap intervals.

Choices on the tuning half (benchmarks/ranking_split.py), never on the held-out one:
* the reference fusion: the best of the whole grid (ranking_references.fusion_grid);
* Tandem's hybrid: the best of the configurations that differ only by settings
  (`candidate`), reported beside the one today's defaults give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.quality_set import LabelledQuery
from benchmarks.ranking_split import (
    HELD_OUT,
    TUNING,
    PerQuery,
    Split,
    choose,
    halves,
    paired_bootstrap,
)

CUTOFF = 10
DEFAULT_HYBRID = "hybrid-linear-0.7"  # today's defaults: TANDEM_FUSION linear, alpha 0.7
KEYWORD_TARGET = 0.97  # keyword MRR@10 >= 0.97 x reference BM25
SEMANTIC_TARGET = 0.99  # semantic MRR@10 >= 0.99 x reference dense
HYBRID_MARGIN = 0.01  # hybrid MRR@10 >= best reference fusion + 0.01


def from_ranks(ranks: Sequence[Sequence[int | None]]) -> PerQuery:
    """Per query, the ranks of its relevant documents (None: not ranked)."""
    reciprocal, recall = [], []
    for per_query in ranks:
        within = [r for r in per_query if r is not None and r <= CUTOFF]
        reciprocal.append(1.0 / min(within) if within else 0.0)
        recall.append(len(within) / len(per_query))
    return PerQuery(np.array(reciprocal), np.array(recall))


def ranks_in(rankings: list[list[str]], queries: list[LabelledQuery]) -> list[list[int | None]]:
    """Each relevant document's rank in its query's ranking of document ids."""
    found = []
    for ranking, query in zip(rankings, queries, strict=True):
        position = {d: r for r, d in enumerate(ranking, 1)}
        found.append([position.get(d) for d in query.relevant])
    return found


def row(split: Split, scores: PerQuery, first_rank: list[int | None]) -> dict[str, Any]:
    every = np.ones(len(scores.reciprocal), dtype=bool)
    return scores.on(every) | halves(split, scores) | {"first_relevant_rank": first_rank}


def _figures(split: Split, scores: PerQuery) -> dict[str, float]:
    both = halves(split, scores)
    return {f"{h}_mrr_at_10": both[h]["mrr_at_10"] for h in (TUNING, HELD_OUT)}


def _compare(split: Split, a: PerQuery, b: PerQuery, *, ratio: bool, goal: float) -> dict[str, Any]:
    """a against b on each half (the held-out one with its interval), and whether the
    held-out figure meets `goal`."""
    found: dict[str, Any] = {}
    for half in (TUNING, HELD_OUT):
        mask = split.mask(half)
        found[half] = paired_bootstrap(a.reciprocal[mask], b.reciprocal[mask], ratio=ratio)
    found["goal"] = goal
    found["met_on_held_out"] = found[HELD_OUT]["value"] >= goal
    found["ci95_above_goal_on_held_out"] = found[HELD_OUT]["ci95_low"] >= goal
    return found


def summarize(
    split: Split,
    tandem: dict[str, PerQuery],
    candidates: list[str],
    references: dict[str, PerQuery],
    fusions: dict[str, PerQuery],
) -> dict[str, Any]:
    """The choices made on the tuning half and the targets on the held-out half."""
    best_fusion, fusion_order = choose(list(fusions), fusions.__getitem__, split)
    hybrids = [n for n in candidates if n.startswith("hybrid-")]
    best_hybrid, hybrid_order = choose(hybrids, tandem.__getitem__, split)
    return {
        "reference_fusion": {
            "chosen_on_tuning": best_fusion,
            "halves": halves(split, fusions[best_fusion]),
            "grid_by_tuning_mrr": {n: _figures(split, fusions[n]) for n in fusion_order},
        },
        "tandem_hybrid": {
            "default": DEFAULT_HYBRID,
            "chosen_on_tuning": best_hybrid,
            "candidates_by_tuning_mrr": {n: _figures(split, tandem[n]) for n in hybrid_order},
        },
        "targets": {
            "keyword / reference BM25": _compare(
                split,
                tandem["keyword"],
                references["reference-bm25"],
                ratio=True,
                goal=KEYWORD_TARGET,
            ),
            "semantic / reference dense": _compare(
                split,
                tandem["semantic"],
                references["reference-dense"],
                ratio=True,
                goal=SEMANTIC_TARGET,
            ),
            "default hybrid - best reference fusion": _compare(
                split, tandem[DEFAULT_HYBRID], fusions[best_fusion], ratio=False, goal=HYBRID_MARGIN
            ),
            "tuned hybrid - best reference fusion": _compare(
                split, tandem[best_hybrid], fusions[best_fusion], ratio=False, goal=HYBRID_MARGIN
            ),
        },
    }
