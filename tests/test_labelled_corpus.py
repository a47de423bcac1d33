"""The man-page / POD labelled set (text extraction, query selection), the reference
rankings of benchmarks/ranking_references.py, and the tuning / held-out split of
benchmarks/ranking_split.py."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
from benchmarks import ranking_references, ranking_report, ranking_split
from benchmarks.doc_text import parse_man, parse_pod, pod_inline, roff_inline
from benchmarks.labelled_corpus import MAX_WORDS, Page, cap_words, select

MAN_PAGE = r""".\" Copyright and licence lines are comments.
.de XX
.ft B
..
.TH PRINTF 3 2023-02-05 "Linux man-pages 6.03"
.SH NAME
printf, fprintf \- formatted output conversion
.SH SYNOPSIS
.nf
.B #include <stdio.h>
.BI "int printf(const char *restrict " format ", ...);"
.fi
.SH DESCRIPTION
The functions in the
.BR printf ()
family produce output according to a
.I format
\(em see
.BR stdio (3).
.PP
A second paragraph with \fBbold\fR and \*(lqquoted\*(rq words\-and dashes.
.TS
tab(:);
l l.
T{
cell one
T}:cell two
.TE
"""

MDOC_PAGE = """.Dd March 1, 2020
.Dt TREE 3
.Os
.Sh NAME
.Nm SPLAY_INIT ,
.Nm RB_INIT
.Nd implementations of splay and
red-black trees
.Sh DESCRIPTION
These macros define data structures for
.Xr queue 3 .
"""

POD = """package List::Util;
use strict;

=head1 NAME

List::Util - A selection of general-utility list subroutines

=head1 SYNOPSIS

    use List::Util qw(first sum);

=head1 DESCRIPTION

C<List::Util> contains a B<selection> of subroutines, see L<perlfunc/sort> and
L<the docs|List::Util::XS>; E<lt>tagsE<gt> and C<< $a <=> $b >> stay readable.

=over 4

=item first BLOCK LIST

Returns the first element.

=back

=cut

sub first { 1 }
"""


def test_roff_escapes_become_plain_characters() -> None:
    assert roff_inline(r"\fBbold\fR \(em \-x \e \*(lqq\*(rq \s-1CA\s0") == 'bold — -x \\ "q" CA'
    assert roff_inline(r"text \" a comment") == "text "


def test_man_page_splits_its_name_line_and_keeps_the_rest() -> None:
    page = parse_man(MAN_PAGE)
    assert page is not None
    assert page.names == "printf, fprintf"
    assert page.description == "formatted output conversion"
    assert "formatted output conversion" not in page.text
    assert "SYNOPSIS\n\n#include <stdio.h>\nint printf(const char *restrict format, ...);" in (
        page.text
    )
    assert "family produce output according to a format — see stdio(3)." in page.text
    assert 'A second paragraph with bold and "quoted" words-and dashes.' in page.text
    assert "cell one" in page.text and "tab(:)" not in page.text
    assert ".ft" not in page.text and "Copyright" not in page.text


def test_mdoc_page_takes_its_description_from_nd() -> None:
    page = parse_man(MDOC_PAGE)
    assert page is not None
    assert page.names == "SPLAY_INIT, RB_INIT"
    assert page.description == "implementations of splay and red-black trees"
    assert "These macros define data structures for queue 3 ." in page.text


def test_man_alias_and_page_without_name_are_skipped() -> None:
    assert parse_man(".so man3/printf.3\n") is None
    assert parse_man(".TH X 1\n.SH DESCRIPTION\nwords\n") is None


def test_pod_name_line_and_text() -> None:
    page = parse_pod(POD)
    assert page is not None
    assert page.name == "List::Util"
    assert page.description == "A selection of general-utility list subroutines"
    assert "sub first" not in page.text and "use strict" not in page.text
    assert "    use List::Util qw(first sum);" in page.text
    assert "List::Util contains a selection of subroutines, see perlfunc sort and the docs;" in (
        page.text
    )
    assert "<tags> and $a <=> $b stay readable." in page.text
    assert "first BLOCK LIST\n\nReturns the first element." in page.text


def test_pod_formatting_codes_nest() -> None:
    assert pod_inline("B<I<deep>> C<< a->b >> X<index>") == "deep a->b "


def test_words_are_capped_at_a_word_boundary_keeping_breaks() -> None:
    assert cap_words("one two\n\nthree four", 3) == "one two\n\nthree"
    assert cap_words("short", MAX_WORDS) == "short"


def _page(page_id: str, description: str, text: str) -> Page:
    return Page(page_id, page_id, f"pkg/{page_id}", description, text)


def test_selection_drops_leaking_ambiguous_short_queries_and_empty_pages() -> None:
    body = " ".join(f"word{i}" for i in range(60))
    pages = [
        _page("man/a.1", "list directory contents", body),
        _page("man/b.1", "copy files and directories", f"{body} Copy files and  directories."),
        _page("man/c.1", "shared description here", body),
        _page("man/d.1", "shared  Description here", body),
        _page("man/e.1", "too short", body),
        _page("man/f.1", "an almost empty page", "few words"),
        _page("man/a.1", "a duplicate id is read once", body),
    ]
    built = select(pages, queries=10, seed=1)
    assert [d["id"] for d in built["documents"]] == [
        "man/a.1",
        "man/b.1",
        "man/c.1",
        "man/d.1",
        "man/e.1",
    ]
    assert [(q["text"], q["relevant"]) for q in built["queries"]] == [
        ("list directory contents", ["man/a.1"])
    ]
    assert built["dropped_ambiguous"] == 2


def test_reference_bm25_matches_the_formula_by_hand() -> None:
    corpus = ["cats chase mice", "dogs chase cats and cats run", "birds sing"]
    scores = ranking_references.bm25_scores(corpus, ["cat running"])[0]
    # After stopwords and stemming: lengths 3, 5, 2 (average 10/3); "cat" in docs 0 and 1,
    # "run" in doc 1 only.
    n, average = 3, 10 / 3

    def term(tf: int, df: int, length: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        k1, b = ranking_references.K1, ranking_references.B
        # Lucene's variant leaves out the constant factor (k1 + 1): the same ranking.
        return idf * tf / (tf + k1 * (1 - b + b * length / average))

    expected = [term(1, 2, 3), term(2, 2, 5) + term(1, 1, 5), 0.0]
    assert scores.tolist() == pytest.approx(expected, rel=1e-5)


def test_reference_fusions_rank_by_their_formulas() -> None:
    bm25 = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)
    dense = np.array([[0.1, 0.5, 0.6]], dtype=np.float32)
    # Linear, alpha 0.5: 0.5 * 0.1 + 0.5 * 1 = 0.55; 0.25; 0.3.
    assert ranking_references.linear(bm25, dense, 0.5, 10) == [[0, 2, 1]]
    # Alpha 0.9: 0.19; 0.45; 0.54.
    assert ranking_references.linear(bm25, dense, 0.9, 10) == [[2, 1, 0]]
    # RRF: doc 0 1/61 + 1/63; docs 1 and 2 get nothing from BM25, which does not match
    # them: 1/62 and 1/61. (Ranked 2nd and 3rd by BM25 they would swap places.)
    assert ranking_references.rrf(bm25, dense, 10) == [[0, 2, 1]]
    chunk_scores = np.array([[0.2, 0.9, 0.4, 0.1]], dtype=np.float32)
    owners = np.array([0, 0, 1, 2], dtype=np.int64)
    assert ranking_references.best_per_document(chunk_scores, owners).tolist() == [
        pytest.approx([0.9, 0.4, 0.1])
    ]


@dataclass(frozen=True)
class _Query:
    id: str
    kind: str


def test_split_is_deterministic_disjoint_and_balanced_per_kind() -> None:
    queries = [_Query(f"q-{i:04d}", "known-item") for i in range(1000)]
    queries += [_Query(f"s{i:02d}", "keyword" if i % 3 else "semantic") for i in range(67)]
    halves = ranking_split.assign(queries)
    # Deterministic: the same halves whatever the order the queries come in.
    assert ranking_split.assign(list(reversed(queries))) == halves
    assert ranking_split.assign(random.Random(3).sample(queries, len(queries))) == halves
    # Disjoint and complete: every query in exactly one of the two halves.
    assert set(halves) == {q.id for q in queries}
    assert set(halves.values()) == {ranking_split.TUNING, ranking_split.HELD_OUT}
    for kind in ("known-item", "keyword", "semantic"):
        members = [halves[q.id] for q in queries if q.kind == kind]
        tuning = members.count(ranking_split.TUNING)
        # Balanced within each kind: the halves differ by at most one query.
        assert tuning - (len(members) - tuning) in (0, 1)
    # The hash decides, not the ids' order: both halves reach across the whole range.
    first = [halves[f"q-{i:04d}"] for i in range(500)]
    assert 200 < first.count(ranking_split.TUNING) < 300
    assert first != [ranking_split.HALVES[i % 2] for i in range(500)]
    split = ranking_split.Split.of(queries)
    assert split.describe()["tuning"] + split.describe()["held_out"] == len(queries)
    with pytest.raises(ValueError, match="unique"):
        ranking_split.assign([*queries, queries[0]])


def test_paired_bootstrap_interval_holds_the_difference() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(400)
    shifted = ranking_split.paired_bootstrap(b + 0.05, b)
    # Paired: a constant shift has no spread at all, however noisy the queries are.
    assert shifted["value"] == pytest.approx(0.05)
    assert shifted["ci95_low"] == pytest.approx(0.05)
    assert shifted["ci95_high"] == pytest.approx(0.05)
    assert shifted["share_at_or_below_null"] == 0.0
    noisy = ranking_split.paired_bootstrap(rng.random(400), b)
    assert noisy["ci95_low"] < noisy["value"] < noisy["ci95_high"]
    assert noisy["ci95_high"] - noisy["ci95_low"] > 0.02
    ratio = ranking_split.paired_bootstrap(2 * b, b, ratio=True)
    assert ratio["value"] == pytest.approx(2.0)
    assert ratio["ci95_low"] == pytest.approx(2.0)


def test_reference_ranks_agree_with_the_rankings_and_fusions() -> None:
    rng = np.random.default_rng(2)
    scores = np.round(rng.random((5, 40)), 1).astype(np.float32)  # many ties
    scores[:, 7] = 0.0
    relevant = [[3, 7], [0], [39], [7], [12, 13]]
    ranks = ranking_references.ranks_of(scores, relevant, require_positive=True)
    for row, documents, found in zip(
        ranking_references.top(scores, 40), relevant, ranks, strict=True
    ):
        expected = [row.index(d) + 1 if d != 7 else None for d in documents]
        assert found == expected
    bm25 = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)
    dense = np.array([[0.1, 0.5, 0.6]], dtype=np.float32)
    unweighted = ranking_references.ReferenceFusion("rrf", "rrf", 0.5, k=60)
    fused = ranking_references.Fuser(ranking_references.ReferenceScores(bm25, bm25, dense))
    assert fused.fused(unweighted).tolist()[0] == pytest.approx([1 / 61 + 1 / 63, 1 / 62, 1 / 61])
    # Min-max over the documents: BM25 4, 0, 0 -> 1, 0, 0; cosine 0.1..0.6 -> 0, 0.8, 1.
    minmax = ranking_references.ReferenceFusion("m", "linear", 0.5, normalisation="minmax")
    assert fused.fused(minmax).tolist()[0] == pytest.approx([0.5, 0.4, 0.5])
    per_query = ranking_report.from_ranks([[3, None], [11], [None]])
    assert per_query.reciprocal.tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert per_query.recall.tolist() == pytest.approx([0.5, 0.0, 0.0])


def test_choice_is_made_on_the_tuning_half_only() -> None:
    queries = [_Query(f"q-{i:04d}", "known-item") for i in range(20)]
    split = ranking_split.Split.of(queries)
    tuning = split.mask(ranking_split.TUNING).astype(float)
    # "a" wins on the tuning half, "b" (by more) on the held-out half.
    scores = {
        "a": ranking_split.PerQuery(0.6 * tuning, tuning),
        "b": ranking_split.PerQuery(1.0 - tuning, 1.0 - tuning),
    }
    chosen, order = ranking_split.choose(["b", "a"], scores.__getitem__, split)
    assert (chosen, order) == ("a", ["a", "b"])
    assert ranking_split.halves(split, scores["a"])["held_out"]["mrr_at_10"] == 0.0
