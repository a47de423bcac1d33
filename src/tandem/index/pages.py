"""One page of a fused ranking, read in one statement: the hits from `offset`, at most
`limit`, with their rows (text, title, source, path) read for that page only.

Grouped by document, the page holds each document once, at its best chunk's rank: the
pool's chunk ids with their ranks (fusion order), joined to `chunks` for their document,
the smallest rank per document (its best chunk), then the page of those by rank. The pool
is small (the retrievers' candidates): a hash aggregate and a sort of a few hundred rows.
Whether the pool holds enough documents is the caller's to check (a short page).

Written as GROUP BY with min(rank) rather than DISTINCT ON: BM25 turns sorting off for
its transaction (tandem.index.bm25.prepare), and DISTINCT ON's sort then lost to a plan
without one, a full scan of the chunks' document_id index (10x the keyword search's time
at 10k chunks). The hash aggregate needs no sort; the page's ORDER BY has no alternative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from tandem.db.statements import statement
from tandem.index.fusion import Candidate
from tandem.index.protocol import IndexHit

_COLUMNS = "c.id, c.document_id, c.ordinal, c.title, c.source, c.path, c.text"
_POOL = "unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS r(id, rank)"
# Each document's best-ranked chunk in the pool, then the page of those by rank; the
# chunk of a rank is the pool's element at that (1-based) position.
_GROUPED = (
    f"SELECT {_COLUMNS} FROM ("
    f" SELECT min(r.rank) AS rank FROM {_POOL} JOIN chunks k ON k.id = r.id"
    " GROUP BY k.document_id ORDER BY rank OFFSET :offset LIMIT :limit) AS page"
    " JOIN chunks c ON c.id = (CAST(:ids AS bigint[]))[CAST(page.rank AS integer)]"
    " ORDER BY page.rank"
)
_CHUNKS = f"SELECT {_COLUMNS} FROM chunks c WHERE c.id = ANY(:ids)"


def read_page(
    session: Session,
    ranked: Sequence[Candidate],
    *,
    offset: int,
    limit: int,
    grouped: bool,
) -> list[IndexHit]:
    """The hits of `ranked` (best first) from `offset`, at most `limit`; `grouped`: one
    per document. Fewer than `limit` when the pool holds no more (or a chunk vanished
    since it was ranked)."""
    if not ranked or limit <= 0:
        return []
    by_id = {c.key: c for c in ranked}
    if grouped:
        params: dict[str, object] = {
            "ids": [c.key for c in ranked],
            "offset": offset,
            "limit": limit,
        }
        rows = list(session.execute(statement(_GROUPED), params))
    else:
        window = ranked[offset : offset + limit]
        if not window:
            return []
        found = {
            int(row[0]): row
            for row in session.execute(statement(_CHUNKS), {"ids": [c.key for c in window]})
        }
        rows = [found[c.key] for c in window if c.key in found]
    return [_hit(row, by_id[int(row[0])]) for row in rows]


def _hit(row: Sequence[Any], candidate: Candidate) -> IndexHit:
    return IndexHit(
        document_id=row[1],
        ordinal=row[2],
        title=row[3],
        source=row[4],
        path=row[5],
        text=row[6],
        score=candidate.score,
        vector_score=candidate.vector_score,
        keyword_score=candidate.keyword_score,
    )
