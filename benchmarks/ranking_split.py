"""Tuning and held-out halves of a labelled set, and the statistics reported on them.

Defaults (fusion, weights, a reference's parameters) are chosen on the tuning half only
and reported on the held-out half, so that a figure is not the best of many tries on the
very queries it is reported on. The split is a function of the query ids alone: within
each kind of query (stdlib: keyword / semantic; man-perl: one kind), the queries ordered
by SHA-256 of SALT + id alternate tuning, held-out, tuning, ... Every run, machine and
subset therefore splits the same query the same way; each half holds half of each kind
(the larger half the tuning one when a kind is odd).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

SALT = "tandem-ranking-split-v1:"
RULE = (
    "per query kind, queries ordered by sha256('tandem-ranking-split-v1:' + id); "
    "even positions tuning, odd positions held-out"
)
TUNING, HELD_OUT = "tuning", "held_out"
HALVES = (TUNING, HELD_OUT)
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 20
Vector = npt.NDArray[np.float64]


class Query(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...


def _digest(query_id: str) -> str:
    return hashlib.sha256((SALT + query_id).encode()).hexdigest()


def assign(queries: Sequence[Query]) -> dict[str, str]:
    """{query id: TUNING or HELD_OUT}; the order of `queries` does not matter."""
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise ValueError("query ids must be unique to split by them")
    halves: dict[str, str] = {}
    for kind in sorted({q.kind for q in queries}):
        ordered = sorted((q.id for q in queries if q.kind == kind), key=_digest)
        for position, query_id in enumerate(ordered):
            halves[query_id] = HALVES[position % 2]
    return halves


@dataclass(frozen=True)
class Split:
    """Row masks over a query list, in that list's order."""

    tuning: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, queries: Sequence[Query]) -> Split:
        halves = assign(queries)
        return cls(np.array([halves[q.id] == TUNING for q in queries], dtype=bool))

    def mask(self, half: str) -> npt.NDArray[np.bool_]:
        return self.tuning if half == TUNING else ~self.tuning

    def describe(self) -> dict[str, Any]:
        return {
            "rule": RULE,
            TUNING: int(self.tuning.sum()),
            HELD_OUT: int((~self.tuning).sum()),
        }


@dataclass(frozen=True)
class PerQuery:
    """One configuration's per-query reciprocal rank and recall at the cutoff."""

    reciprocal: Vector
    recall: Vector

    def on(self, mask: npt.NDArray[np.bool_]) -> dict[str, float]:
        return {
            "mrr_at_10": float(self.reciprocal[mask].mean()),
            "recall_at_10": float(self.recall[mask].mean()),
        }


def halves(split: Split, scores: PerQuery) -> dict[str, dict[str, float]]:
    return {half: scores.on(split.mask(half)) for half in HALVES}


def choose(
    names: Sequence[str], scores: Callable[[str], PerQuery], split: Split
) -> tuple[str, list[str]]:
    """The name with the best tuning-half MRR@10 (ties: the first), and all by it."""
    tuning = split.mask(TUNING)
    ranked = sorted(names, key=lambda n: -float(scores(n).reciprocal[tuning].mean()))
    return ranked[0], ranked


def paired_bootstrap(
    a: Vector, b: Vector, *, ratio: bool = False, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, float]:
    """mean(a) - mean(b) (or mean(a) / mean(b)), with a 95% percentile interval from
    resampling the queries (the same resample for both: the pairing), and the share of
    resamples where the difference is <= 0 (ratio: <= 1)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rows = rng.integers(0, len(a), size=(samples, len(a)))
    mean_a, mean_b = a[rows].mean(axis=1), b[rows].mean(axis=1)
    if ratio:
        values = np.divide(mean_a, mean_b, out=np.full_like(mean_a, np.nan), where=mean_b > 0)
        point, null = float(a.mean() / b.mean()), 1.0
    else:
        values = mean_a - mean_b
        point, null = float(a.mean() - b.mean()), 0.0
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return {
        "value": point,
        "ci95_low": float(low),
        "ci95_high": float(high),
        "share_at_or_below_null": float(np.mean(values <= null)),
        "queries": len(a),
    }
