"""The keyword-search contract: BM25 over every chunk, the same on every engine.

Scores are checked against :func:`asemantic.domain.keywords.bm25` computed here from the
corpus (FTS5's formula), so the three engines are compared with one reference, not
with each other's output.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.keywords import bm25, idf, index_tokens, query_terms, rounded
from asemantic.errors import InvalidInputError
from asemantic.ports import SearchFilters, Store

from .builders import AXIS, chunk_ids, make_write, vec

CORPUS = {
    "errors.md": [
        "The build failed with ERR_1234 when os.path.join got None.",
        "Retry the request; ERR_5678 means the quota is spent.",
        "Nothing about codes here, only prose about failures and builds.",
    ],
    "api.md": [
        "Call getUserName() to read the user's name from the session.",
        "The user table holds one row per user; names are unique.",
        "os.path is the module; join paths with it.",
    ],
    "misc.md": [
        "Café au lait, straße, and other Unicode words.",
        "!!! ??? ...",
    ],
}


async def _corpus(store: Store, *, ready: bool = False) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for source, texts in CORPUS.items():
        vectors = {i: vec(1.0, float(i)) for i in range(len(texts))} if ready else None
        await store.write_document(
            make_write(source, texts, vectors=vectors, metadata={"name": source})
        )
        ids[source] = await chunk_ids(store, source)
    return ids


def _reference(query: str, texts: dict[int, str]) -> list[tuple[int, float]]:
    """BM25 of every chunk holding a query term, best first, ties by id."""
    terms = query_terms(query)
    tokens = {i: index_tokens(t) for i, t in texts.items()}
    n = len(tokens)
    average = sum(len(t) for t in tokens.values()) / n
    idfs = {t: idf(n, sum(1 for toks in tokens.values() if t in toks)) for t in terms}
    scored = [
        (i, bm25(Counter(toks), len(toks), terms=terms, idfs=idfs, average_length=average))
        for i, toks in tokens.items()
        if any(t in toks for t in terms)
    ]
    return sorted(scored, key=lambda p: (-rounded(p[1]), p[0]))


def _texts(ids: dict[str, list[int]]) -> dict[int, str]:
    return {
        chunk_id: CORPUS[source][i]
        for source, chunk_list in ids.items()
        for i, chunk_id in enumerate(chunk_list)
    }


@pytest.mark.parametrize(
    "query",
    ["ERR_1234", "os.path.join", "user name", "getUserName", "failed builds", "STRASSE café"],
)
async def test_ranking_and_scores_follow_bm25(store: Store, query: str) -> None:
    ids = await _corpus(store)
    expected = _reference(query, _texts(ids))
    hits = await store.keyword_search(query_terms(query), k=10)
    assert [h.chunk_id for h in hits] == [i for i, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, rel=1e-9)
        assert hit.keyword_score == hit.score
        assert hit.distance is None
    assert [h.keyword_rank for h in hits] == list(range(1, len(hits) + 1))


async def test_an_exact_identifier_ranks_its_chunk_first(store: Store) -> None:
    ids = await _corpus(store)
    [first, *_] = await store.keyword_search(query_terms("os.path.join"), k=3)
    assert first.chunk_id == ids["errors.md"][0]
    [code] = await store.keyword_search(query_terms("ERR_5678"), k=1)
    assert code.chunk_id == ids["errors.md"][1]


async def test_pending_chunks_are_found_with_their_status(store: Store) -> None:
    await store.write_document(make_write("p.md", ["pending words only"]))
    await store.write_document(make_write("r.md", ["ready words"], vectors={0: AXIS}))
    hits = await store.keyword_search(["words"], k=5)
    status = {h.source: h.embedding_status for h in hits}
    assert status == {"p.md": EmbeddingStatus.PENDING, "r.md": EmbeddingStatus.READY}


async def test_k_limits_and_no_match_is_empty(store: Store) -> None:
    await _corpus(store)
    assert len(await store.keyword_search(["user"], k=1)) == 1
    assert await store.keyword_search(["zzzunknown"], k=5) == []
    assert await store.keyword_search([], k=5) == []


async def test_filters_apply_before_ranking(store: Store) -> None:
    ids = await _corpus(store)
    filters = SearchFilters(sources=["api.md"])
    hits = await store.keyword_search(query_terms("os.path.join user"), k=1, filters=filters)
    assert [h.source for h in hits] == ["api.md"]
    texts = {i: t for i, t in _texts(ids).items() if i in ids["api.md"]}
    everything = _reference("os.path.join user", _texts(ids))
    best_api = next(i for i, _ in everything if i in texts)
    assert hits[0].chunk_id == best_api
    by_meta = await store.keyword_search(
        ["user"], k=5, filters=SearchFilters(metadata={"name": "errors.md"})
    )
    assert by_meta == []


async def test_rewrite_and_delete_keep_the_index_in_step(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["alpha beta", "gamma"]))
    assert len(await store.keyword_search(["alpha"], k=5)) == 1
    await store.write_document(make_write("doc.md", ["delta beta", "gamma"]))
    assert await store.keyword_search(["alpha"], k=5) == []
    [hit] = await store.keyword_search(["delta"], k=5)
    assert hit.text == "delta beta"
    assert len(await store.keyword_search(["gamma"], k=5)) == 1
    assert await store.integrity_check() == "ok"  # one keyword row per chunk
    assert await store.delete_document("doc.md")
    assert await store.keyword_search(["beta", "gamma", "delta"], k=5) == []
    assert await store.integrity_check() == "ok"


async def test_query_syntax_is_refused_not_interpreted(store: Store) -> None:
    await _corpus(store)
    for bad in ['"user"', "user OR name", "a b", "NEAR(", "-x", "*", "user:1 x", "", "Café"]:
        with pytest.raises(InvalidInputError):
            await store.keyword_search([bad], k=5)
    # The same characters inside a query are plain text once tokenised.
    hits = await store.keyword_search(query_terms('"user" -name* NEAR(:'), k=5)
    assert hits and all(math.isfinite(h.score) for h in hits)
