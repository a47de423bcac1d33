"""The text forms search sends and shows: pgvector literals, reused statements, snippets."""

from __future__ import annotations

import numpy as np

from tandem.db.models import vector_literal
from tandem.db.statements import statement
from tandem.index.highlight import snippet, snippets


def test_a_vector_literal_of_an_array_is_that_of_its_floats() -> None:
    vector = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    expected = "[" + ",".join(repr(float(x)) for x in vector) + "]"
    assert vector_literal(vector) == expected
    assert vector_literal(list(vector)) == expected  # numpy scalars, not an array
    assert vector_literal([0.5, -1, 2.25]) == "[0.5,-1.0,2.25]"


def test_the_same_sql_is_one_statement_and_other_sql_another() -> None:
    first = statement("SELECT :a")
    assert statement("SELECT :a") is first
    assert statement("SELECT :b") is not first
    assert list(first.compile().params) == ["a"]


def test_a_pages_snippets_are_each_texts_snippet() -> None:
    texts = [
        "Indexing documents: the indexer indexed them all.",
        "Nothing here matches.",
        "  spread   over\n\nlines: an index  ",
    ]
    marked = snippets(texts, "index documents")
    assert marked == [snippet(t, "index documents") for t in texts]
    assert "<mark>Indexing</mark>" in marked[0] and "<mark>documents</mark>" in marked[0]
    assert "<mark>" not in marked[1]
    assert marked[2] == "spread over lines: an <mark>index</mark>"
    assert snippets([], "anything") == []
