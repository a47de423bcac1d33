"""BM25 keyword ranking: postings, term statistics and corpus statistics kept by triggers.

Every statement that writes `chunks` (INSERT, COPY, UPDATE, DELETE, a cascaded delete,
TRUNCATE) updates, in the same transaction, the postings (term, chunk, weighted term
frequency, chunk length), each term's document frequency and the corpus totals, so the
statistics are exact whatever path wrote the chunks. Writers serialize on one advisory
lock for the statistics only (taken by the trigger, held to commit): chunk writes are
short next to embedding, and one lock cannot deadlock with itself.

Term frequency and length are BM25F-style with two fields sharing one `b`: a title
occurrence counts `title_weight` times a body occurrence (the `tsv` column labels title
lexemes A). `bm25_rebuild()` recomputes everything from `chunks.tsv` (after changing
`title_weight`, or to repair).

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Held by the triggers and bm25_rebuild() while they write the statistics.
STATISTICS_LOCK_ID = 7_415_303
DEFAULT_TITLE_WEIGHT = 2.0
# Must match tandem.index.bm25_formula.impact_sql (the planner matches the expression as
# written; tests/test_bm25_formula.py compares it with the live index).
IMPACT_INDEX_KEY = "term_id, (tf / (tf + 0.3 + 0.009 * length)) DESC"

TABLES = f"""
CREATE TABLE bm25_corpus (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chunks bigint NOT NULL DEFAULT 0,
    total_length double precision NOT NULL DEFAULT 0,
    title_weight real NOT NULL DEFAULT {DEFAULT_TITLE_WEIGHT}
);
INSERT INTO bm25_corpus DEFAULT VALUES;

CREATE TABLE bm25_terms (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lexeme text NOT NULL UNIQUE,
    df integer NOT NULL,
    -- Bounds for pruning: no posting of the term has a larger tf or a shorter chunk.
    -- They stay valid (if looser) after deletes.
    max_tf real NOT NULL,
    min_length real NOT NULL
);

CREATE TABLE bm25_postings (
    term_id integer NOT NULL,
    chunk_id bigint NOT NULL,
    tf real NOT NULL,
    length real NOT NULL,
    PRIMARY KEY (term_id, chunk_id) INCLUDE (tf, length)
);
-- Each term's postings by impact, best first: where candidates are sampled from when a
-- query has only very common terms (tandem.index.bm25.IMPACT).
CREATE INDEX bm25_postings_impact ON bm25_postings ({IMPACT_INDEX_KEY}) INCLUDE (chunk_id);
"""

# One function for every trigger event: the transition tables `old_chunks` and
# `new_chunks` exist only for the events that have them, and PL/pgSQL plans a statement
# only when it runs.
TRIGGER_FUNCTION = f"""
CREATE FUNCTION bm25_chunks_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    weight real;
BEGIN
    -- Updates that leave every row's text as it was (new embeddings: `tandem reindex`)
    -- change no statistic: skip them, without taking the lock.
    IF TG_OP = 'UPDATE' THEN
        IF (
            SELECT count(*) FROM old_chunks o JOIN new_chunks n ON n.id = o.id AND n.tsv = o.tsv
        ) = (SELECT count(*) FROM old_chunks) THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock({STATISTICS_LOCK_ID});
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE bm25_postings, bm25_terms;
        UPDATE bm25_corpus SET chunks = 0, total_length = 0;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        WITH keys AS (
            SELECT t.id AS term_id, o.id AS chunk_id
            FROM old_chunks o
            CROSS JOIN LATERAL unnest(o.tsv) AS e
            JOIN bm25_terms t ON t.lexeme = e.lexeme
        ), gone AS (
            DELETE FROM bm25_postings p USING keys k
            WHERE p.term_id = k.term_id AND p.chunk_id = k.chunk_id
            RETURNING p.term_id, p.chunk_id, p.length
        ), frequencies AS (
            -- Data-modifying CTEs always run to completion, read or not.
            UPDATE bm25_terms t SET df = t.df - g.n
            FROM (SELECT term_id, count(*) AS n FROM gone GROUP BY term_id) g
            WHERE t.id = g.term_id
        )
        UPDATE bm25_corpus SET
            chunks = chunks - (SELECT count(*) FROM old_chunks),
            total_length = total_length
                - (SELECT coalesce(sum(length), 0)
                   FROM (SELECT DISTINCT chunk_id, length FROM gone) AS d);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT title_weight INTO weight FROM bm25_corpus;
        WITH entries AS (
            SELECT n.id AS chunk_id, e.lexeme,
                cardinality(e.positions)
                    + (weight - 1) * cardinality(array_positions(e.weights, 'A')) AS tf
            FROM new_chunks n CROSS JOIN LATERAL unnest(n.tsv) AS e
        ), lengths AS (
            SELECT chunk_id, sum(tf) AS length FROM entries GROUP BY chunk_id
        ), terms AS (
            INSERT INTO bm25_terms AS t (lexeme, df, max_tf, min_length)
            SELECT e.lexeme, count(*), max(e.tf), min(l.length)
            FROM entries e JOIN lengths l USING (chunk_id)
            GROUP BY e.lexeme ORDER BY e.lexeme
            ON CONFLICT (lexeme) DO UPDATE SET
                df = t.df + excluded.df,
                max_tf = greatest(t.max_tf, excluded.max_tf),
                min_length = least(t.min_length, excluded.min_length)
            RETURNING t.id, t.lexeme
        ), corpus AS (
            UPDATE bm25_corpus SET
                chunks = chunks + (SELECT count(*) FROM new_chunks),
                total_length = total_length + (SELECT coalesce(sum(length), 0) FROM lengths)
        )
        INSERT INTO bm25_postings (term_id, chunk_id, tf, length)
        SELECT terms.id, e.chunk_id, e.tf, l.length
        FROM entries e JOIN lengths l USING (chunk_id) JOIN terms USING (lexeme);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER bm25_chunks_inserted AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION bm25_chunks_changed();
CREATE TRIGGER bm25_chunks_deleted AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION bm25_chunks_changed();
CREATE TRIGGER bm25_chunks_updated AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_chunks NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION bm25_chunks_changed();
CREATE TRIGGER bm25_chunks_truncated AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION bm25_chunks_changed();
"""

REBUILD_FUNCTION = f"""
CREATE FUNCTION bm25_rebuild() RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    weight real;
BEGIN
    PERFORM pg_advisory_xact_lock({STATISTICS_LOCK_ID});
    SELECT title_weight INTO weight FROM bm25_corpus;
    TRUNCATE bm25_postings, bm25_terms;
    CREATE TEMP TABLE bm25_entries ON COMMIT DROP AS
        SELECT c.id AS chunk_id, e.lexeme,
            (cardinality(e.positions)
                + (weight - 1) * cardinality(array_positions(e.weights, 'A')))::real AS tf
        FROM chunks c CROSS JOIN LATERAL unnest(c.tsv) AS e;
    CREATE TEMP TABLE bm25_lengths ON COMMIT DROP AS
        SELECT chunk_id, sum(tf)::real AS length FROM bm25_entries GROUP BY chunk_id;
    INSERT INTO bm25_terms (lexeme, df, max_tf, min_length)
        SELECT e.lexeme, count(*), max(e.tf), min(l.length)
        FROM bm25_entries e JOIN bm25_lengths l USING (chunk_id)
        GROUP BY e.lexeme ORDER BY e.lexeme;
    INSERT INTO bm25_postings (term_id, chunk_id, tf, length)
        SELECT t.id, e.chunk_id, e.tf, l.length
        FROM bm25_entries e JOIN bm25_lengths l USING (chunk_id) JOIN bm25_terms t USING (lexeme)
        ORDER BY t.id, e.chunk_id;
    UPDATE bm25_corpus SET
        chunks = (SELECT count(*) FROM chunks),
        total_length = (SELECT coalesce(sum(length), 0) FROM bm25_lengths);
    DROP TABLE bm25_entries, bm25_lengths;
END
$fn$;
"""


def upgrade() -> None:
    # Keyword search reads the postings now; the GIN index would only slow every insert.
    op.execute("DROP INDEX IF EXISTS ix_chunks_tsv")
    op.execute(TABLES)
    op.execute(TRIGGER_FUNCTION)
    op.execute(REBUILD_FUNCTION)
    # Chunks indexed before this revision get their postings now.
    op.execute("SELECT bm25_rebuild()")


def downgrade() -> None:
    for event in ("inserted", "deleted", "updated", "truncated"):
        op.execute(f"DROP TRIGGER IF EXISTS bm25_chunks_{event} ON chunks")
    op.execute("DROP FUNCTION IF EXISTS bm25_chunks_changed()")
    op.execute("DROP FUNCTION IF EXISTS bm25_rebuild()")
    op.execute("DROP TABLE IF EXISTS bm25_postings, bm25_terms, bm25_corpus")
    op.execute("CREATE INDEX ix_chunks_tsv ON chunks USING gin (tsv)")
