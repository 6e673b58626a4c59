"""The keyword tokenizer, BM25 and weighted reciprocal rank fusion (pure domain code)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asemantic.domain.fusion import Fusion, SearchMode, fuse, is_identifier_query, parse_mode
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


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_the_ascii_path_cuts_as_the_unicode_path(text: str) -> None:
    """ASCII text takes a faster path; a non-ASCII word appended sends the same text
    down the general one: the tokens must agree (BM25 counts them, order aside)."""
    assert sorted([*tokenize(text), "\u00e9"]) == sorted(tokenize(text + " \u00e9"))


def test_idf_is_fts5s_with_its_floor() -> None:
    assert idf(100, 1) == pytest.approx(math.log(99.5 / 1.5))
    assert idf(10, 5) == IDF_FLOOR  # log(1) = 0: floored
    assert idf(10, 9) == IDF_FLOOR


def test_bm25_follows_the_formula() -> None:
    idfs = {"a": 2.0, "b": 0.5}
    score = bm25({"a": 3}, 10, terms=["a", "b"], idfs=idfs, average_length=20.0)
    assert score == pytest.approx(2.0 * (3 * 2.2) / (3 + 1.2 * (1 - 0.75 + 0.75 * 10 / 20)))


RANKED_IDS = st.lists(st.integers(1, 40), unique=True, max_size=30)
"""A ranked list of chunk ids, as a search returns."""


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
@given(RANKED_IDS, RANKED_IDS, st.integers(1, 50))
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


@pytest.mark.parametrize(
    "query",
    [
        "ERR_4711",
        "getUserName",
        "E11000",
        "http2time",
        "HTTP",
        "os.path.join",
        "std::vector",
        "tk_chooseColor",
        "Server.start_serving",
        '"ERR_1"',
        " ERR_1 ",
    ],
)
def test_code_shaped_single_tokens_are_identifier_queries(query: str) -> None:
    assert is_identifier_query(query)


@pytest.mark.parametrize(
    "query", ["retry", "Retry", "2024", "disk full", "ERR_1 in the log", "well-known", "", "_"]
)
def test_words_numbers_and_sentences_are_not(query: str) -> None:
    assert not is_identifier_query(query)


def test_keyword_led_fusion_keeps_the_keyword_order_then_fills_by_vector() -> None:
    fusion = Fusion(vector_weight=1.0, keyword_weight=1.0)
    led = fuse([7, 3, 1, 2], [2, 4], k=4, fusion=fusion, keyword_led=True)
    assert [r.chunk_id for r in led] == [2, 4, 7, 3]
    assert [(r.vector_rank, r.keyword_rank) for r in led] == [
        (4, 1),
        (None, 2),
        (1, None),
        (2, None),
    ]
    assert [r.score for r in led] == pytest.approx([2 / 61, 2 / 62, 2 / 63, 2 / 64])
    # A keyword weight of 0 ignores the keyword list, led or not.
    ignored = fuse([7, 3], [2], k=2, fusion=Fusion(keyword_weight=0.0), keyword_led=True)
    assert [r.chunk_id for r in ignored] == [7, 3]


@settings(max_examples=200, deadline=None)
@given(RANKED_IDS, RANKED_IDS, st.integers(1, 50))
def test_keyword_led_fusion_is_never_worse_than_the_keyword_list(
    vector: list[int], keyword: list[int], k: int
) -> None:
    led = fuse(vector, keyword, k=k, fusion=Fusion(), keyword_led=True)
    ids = [r.chunk_id for r in led]
    assert ids[: min(k, len(keyword))] == keyword[:k]
    assert len(ids) == min(k, len(set(vector) | set(keyword)))
    scores = [r.score for r in led]
    assert scores == sorted(scores, reverse=True)


def test_identifier_handling_is_checked() -> None:
    assert Fusion(identifiers="fuse").identifiers == "fuse"
    with pytest.raises(InvalidInputError, match="identifiers"):
        Fusion(identifiers="vector")
