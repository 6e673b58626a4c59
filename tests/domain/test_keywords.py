"""The keyword tokenizer, BM25 and weighted reciprocal rank fusion (pure domain code)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.domain.fusion import Fusion, SearchMode, fuse, parse_mode
from asemantic.domain.keywords import (
    IDF_FLOOR,
    JOINERS,
    MAX_TERM_FREQUENCY,
    MAX_TOKEN_CHARS,
    bm25,
    idf,
    index_tokens,
    query_terms,
    tokenize,
)
from asemantic.errors import InvalidInputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("os.path.join(a, b)", ["os.path.join", "a", "b", "os", "path", "join"]),
        ("ERR_1234 failed.", ["err_1234", "failed", "err", "1234"]),
        ("snake_case", ["snake_case", "snake", "case"]),
        ("getUserName", ["getusername", "get", "user", "name"]),
        ("HTTPServer", ["httpserver", "http", "server"]),
        (
            "std::vector src/main.py",
            ["std::vector", "src/main.py", "std", "vector", "src", "main", "py"],
        ),
        ("Straße CAFÉ", ["strasse", "café"]),
        ("東京", ["東", "京"]),
        ('NEAR "x" -y *z :w', ["near", "x", "y", "z", "w"]),
        ("the end. Next", ["the", "end", "next"]),
        ("!!! ???", []),
    ],
)
def test_tokens(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_long_tokens_are_cut_and_frequent_terms_capped() -> None:
    assert tokenize("x" * 200) == ["x" * MAX_TOKEN_CHARS]
    tokens = index_tokens("spam " * (MAX_TERM_FREQUENCY + 50) + "eggs")
    assert tokens.count("spam") == MAX_TERM_FREQUENCY and tokens.count("eggs") == 1


def test_query_terms_are_each_token_once() -> None:
    assert query_terms("user USER os.path os") == ["user", "os.path", "os", "path"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_every_token_is_its_own_first_token(text: str) -> None:
    """What the adapters check a term by: a token never changes when tokenised again,
    and holds nothing an engine would have to quote."""
    for token in tokenize(text):
        assert tokenize(token)[:1] == [token]
        assert token and len(token) <= MAX_TOKEN_CHARS
        assert not any(c.isspace() or c in "\"'\\*()" for c in token)
        assert set(token) - set(JOINERS), token


def test_idf_is_fts5s_with_its_floor() -> None:
    assert idf(100, 1) == pytest.approx(math.log(99.5 / 1.5))
    assert idf(10, 5) == IDF_FLOOR  # log(1) = 0: floored
    assert idf(10, 9) == IDF_FLOOR


def test_bm25_follows_the_formula() -> None:
    idfs = {"a": 2.0, "b": 0.5}
    score = bm25({"a": 3}, 10, terms=["a", "b"], idfs=idfs, average_length=20.0)
    assert score == pytest.approx(2.0 * (3 * 2.2) / (3 + 1.2 * (1 - 0.75 + 0.75 * 10 / 20)))


def test_fusion_is_weighted_rrf_with_ties_by_id() -> None:
    fused = fuse([3, 1, 2], [2, 4], k=10, fusion=Fusion(vector_weight=1.0, keyword_weight=2.0))
    scores = {r.chunk_id: r.score for r in fused}
    assert scores[2] == pytest.approx(1 / 63 + 2 / 61)
    assert scores[4] == pytest.approx(2 / 62)
    assert [r.chunk_id for r in fused] == [2, 4, 3, 1]
    assert [(r.vector_rank, r.keyword_rank) for r in fused] == [
        (3, 1),
        (None, 2),
        (1, None),
        (2, None),
    ]
    tie = fuse([5], [4], k=2, fusion=Fusion())
    assert [r.chunk_id for r in tie] == [4, 5]


def test_a_chunk_without_a_vector_counts_its_keyword_rank_for_both() -> None:
    plain = fuse([1, 2], [3, 1], k=3, fusion=Fusion())
    assert [r.chunk_id for r in plain] == [1, 3, 2]
    waiting = fuse([1, 2], [3, 1], k=3, fusion=Fusion(), no_vector=[3])
    assert [r.chunk_id for r in waiting] == [3, 1, 2]
    assert waiting[0].score == pytest.approx(2 / 61)
    assert (waiting[0].vector_rank, waiting[0].keyword_rank) == (None, 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 40), unique=True, max_size=30),
    st.lists(st.integers(1, 40), unique=True, max_size=30),
    st.integers(1, 50),
)
def test_fusion_returns_k_of_the_union_best_first(
    vector: list[int], keyword: list[int], k: int
) -> None:
    fused = fuse(vector, keyword, k=k, fusion=Fusion())
    union = set(vector) | set(keyword)
    assert len(fused) == min(k, len(union))
    assert {r.chunk_id for r in fused} <= union
    keys = [(-r.score, r.chunk_id) for r in fused]
    assert keys == sorted(keys)
    for r in fused:
        assert (r.vector_rank is not None) == (r.chunk_id in vector)
        assert (r.keyword_rank is not None) == (r.chunk_id in keyword)


def test_modes_parse_or_are_refused() -> None:
    assert parse_mode("keyword") is SearchMode.KEYWORD
    assert parse_mode(SearchMode.VECTOR) is SearchMode.VECTOR
    for bad in ("Hybrid", "", None, 1):
        with pytest.raises(InvalidInputError):
            parse_mode(bad)


def test_depth_reads_each_list_at_least_k_deep() -> None:
    assert Fusion().depth(10) == 50
    assert Fusion(candidates=5).depth(10) == 10
