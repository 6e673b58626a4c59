"""SemanticCore.search modes on every engine: hybrid (RRF), vector, keyword."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asemantic import (
    CoreConfig,
    EmbeddingSpace,
    EmbeddingStatus,
    Fusion,
    GoogleKeyring,
    InvalidInputError,
    SearchMode,
    SemanticCore,
    StoreError,
)
from asemantic.domain.fusion import fuse
from asemantic.domain.keywords import query_terms
from asemantic.testing import LexicalEmbedder
from tests.support import Databases

DOCS = {
    "build.md": "# Build\n\nThe build failed with ERR_1234 when os.path.join got None.",
    "quota.md": "# Quota\n\nRetry later: ERR_5678 means the daily quota is spent.",
    "refunds.md": "# Refunds\n\nCustomers get a full refund within thirty days of purchase.",
    "paths.md": "# Paths\n\nJoin paths with the path module; never build them by hand.",
    "vacation.md": "# Vacation\n\nEmployees have twenty-eight days of paid vacation a year.",
}
PENDING = {
    "late.md": "# Late\n\nA refund arrives late when the bank holds the payment.",
    "codes.md": "# Codes\n\nERR_9999 is the code of a refund the bank refused.",
}


@pytest.fixture
def embedder() -> LexicalEmbedder:
    return LexicalEmbedder(EmbeddingSpace(model="lexical-hash-v1", dimensions=256))


async def _open(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases, config: CoreConfig
) -> SemanticCore:
    target = await databases.target(tmp_path / "kb.db", space=embedder.space)
    return await SemanticCore.open(
        target, embedder=embedder, keys=GoogleKeyring("k", batch_key="b"), config=config
    )


@pytest.fixture
async def core(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> AsyncIterator[SemanticCore]:
    opened = await _open(tmp_path, embedder, databases, CoreConfig(space=embedder.space))
    try:
        for source, text in DOCS.items():
            await opened.ingest(text, source=source)
        for source, text in PENDING.items():
            await opened.ingest(text, source=source, mode="async")
        yield opened
    finally:
        await opened.aclose()


async def test_hybrid_is_the_default_and_fuses_both_lists(core: SemanticCore) -> None:
    query = "refund payment bank"
    default = await core.search(query, k=5)
    hybrid = await core.search(query, k=5, mode="hybrid")
    assert default == hybrid
    vector = await core.search(query, k=50, mode=SearchMode.VECTOR)
    keyword = await core.search(query, k=50, mode="keyword")
    waiting = [h.chunk_id for h in keyword if h.embedding_status is EmbeddingStatus.PENDING]
    assert waiting  # the PENDING chunks take part, by their words
    expected = fuse(
        [h.chunk_id for h in vector],
        [h.chunk_id for h in keyword],
        k=5,
        fusion=Fusion(),
        no_vector=waiting,
    )
    assert [h.chunk_id for h in hybrid] == [r.chunk_id for r in expected]
    for hit, ranked in zip(hybrid, expected, strict=True):
        assert hit.score == pytest.approx(ranked.score)
        assert (hit.vector_rank, hit.keyword_rank) == (ranked.vector_rank, ranked.keyword_rank)
        by_vector = {h.chunk_id: h for h in vector}
        if hit.vector_rank is not None:
            assert hit.distance == by_vector[hit.chunk_id].distance
        else:
            assert hit.distance is None
        assert ("keyword" in hit.found_by) == (hit.keyword_score is not None)


async def test_pending_chunks_are_found_by_keyword_with_their_status(
    core: SemanticCore,
) -> None:
    hits = await core.search("ERR_9999", k=3, mode="keyword")
    assert hits[0].source == "codes.md"
    assert hits[0].embedding_status is EmbeddingStatus.PENDING
    ranked = await core.search("ERR_9999", k=3)
    assert ranked[0].source == "codes.md"  # not ranked down for waiting on its vector
    hybrid = {h.source: h for h in ranked}
    assert hybrid["codes.md"].found_by == ("keyword",)
    assert hybrid["codes.md"].distance is None
    assert hybrid["codes.md"].embedding_status is EmbeddingStatus.PENDING
    vector = await core.search("ERR_9999", k=10, mode="vector")
    assert "codes.md" not in {h.source for h in vector}
    assert {h.embedding_status for h in vector} == {EmbeddingStatus.READY}


async def test_exact_identifier_ranks_its_chunk_first(core: SemanticCore) -> None:
    for query, source in [("ERR_1234", "build.md"), ("os.path.join", "build.md")]:
        assert (await core.search(query, k=3, mode="keyword"))[0].source == source
        assert (await core.search(query, k=3))[0].source == source


async def test_an_identifier_query_is_keyword_led(core: SemanticCore) -> None:
    # "refund" is a plain word: both lists fused. ERR_9999 is code: the chunk holding
    # it first (it is PENDING: found by its words), then the vector list's best.
    keyword = [h.chunk_id for h in await core.search("ERR_9999", k=10, mode="keyword")]
    vector = [h.chunk_id for h in await core.search("ERR_9999", k=10, mode="vector")]
    assert 0 < len(keyword) < 7  # the other chunks come from the vector list
    led = await core.search("ERR_9999", k=7)
    expected = keyword + [c for c in vector if c not in keyword]
    assert [h.chunk_id for h in led] == expected[:7]
    assert led[0].source == "codes.md"
    assert [h.score for h in led] == sorted((h.score for h in led), reverse=True)
    fused = await core.search("ERR_9999", k=3, fusion=Fusion(identifiers="fuse"))
    assert fused[0].source == "codes.md"  # also first when fused, here


@pytest.mark.parametrize("failing", ["search", "keyword_search"])
async def test_a_failing_list_fails_the_hybrid_search_with_its_own_error(
    core: SemanticCore, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # Both lists are searched at the same time; either one's error comes out as it is
    # (not wrapped in a group), and the other search is not left running.
    store = core.store
    other = "keyword_search" if failing == "search" else "search"
    real_other = getattr(store, other)
    finished: list[str] = []

    async def broken(*args: object, **kwargs: object) -> object:
        raise StoreError("the disk went away")

    async def slow(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(0.05)
        finished.append(other)
        return await real_other(*args, **kwargs)

    monkeypatch.setattr(store, failing, broken)
    monkeypatch.setattr(store, other, slow)
    with pytest.raises(StoreError, match="disk went away"):
        await core.search("refund payment", k=3)
    await asyncio.sleep(0.1)
    # The vector search (a task) is cancelled when the keyword search fails; the keyword
    # search (awaited in place) ends before the vector search's error is raised.
    assert finished == ([] if failing == "keyword_search" else ["keyword_search"])


async def test_hybrid_returns_k_whenever_k_chunks_match(core: SemanticCore) -> None:
    total = len(DOCS) + len(PENDING)
    hits = await core.search("refund", k=total)
    assert len(hits) == total  # every READY chunk by meaning, PENDING ones by words
    assert len({h.chunk_id for h in hits}) == total
    small = Fusion(candidates=1)
    assert len(await core.search("refund", k=6, fusion=small)) == 6


async def test_keyword_mode_embeds_nothing(core: SemanticCore, embedder: LexicalEmbedder) -> None:
    calls = embedder.calls
    assert await core.search("refund", k=2, mode="keyword")
    assert embedder.calls == calls
    await core.search("refund", k=2)
    assert embedder.calls == calls + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "semantic"},
        {"mode": None},
        {"mode": "keyword", "query": "!!! ???"},
        {"query": "   "},
        {"k": 0},
        {"fusion": {"vector_weight": 1}},
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    core: SemanticCore, embedder: LexicalEmbedder, kwargs: dict[str, object]
) -> None:
    calls = embedder.calls
    options = dict(kwargs)
    query = options.pop("query", "refund")
    with pytest.raises(InvalidInputError):
        await core.search(query, **options)  # type: ignore[arg-type]
    assert embedder.calls == calls


@pytest.mark.parametrize(
    "values",
    [
        {"vector_weight": -1.0},
        {"keyword_weight": float("nan")},
        {"vector_weight": 0.0, "keyword_weight": 0.0},
        {"constant": float("inf")},
        {"candidates": 0},
        {"vector_weight": True},
    ],
)
def test_bad_fusion_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        Fusion(**values)  # type: ignore[arg-type]


async def test_weights_steer_the_fusion(core: SemanticCore) -> None:
    query = "refund payment bank"
    keyword = await core.search(query, k=4, mode="keyword")
    vector = await core.search(query, k=4, mode="vector")
    words = await core.search(query, k=4, fusion=Fusion(vector_weight=0.0))
    meaning = await core.search(query, k=4, fusion=Fusion(keyword_weight=0.0))
    assert 0 < len(keyword) < 4  # the other hits are found by meaning alone, after
    assert [h.chunk_id for h in words][: len(keyword)] == [h.chunk_id for h in keyword]
    assert [h.chunk_id for h in meaning] == [h.chunk_id for h in vector]


async def test_config_sets_the_default_fusion(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> None:
    config = CoreConfig(space=embedder.space, fusion=Fusion(vector_weight=0.0))
    core = await _open(tmp_path, embedder, databases, config)
    try:
        for source, text in {**DOCS, **PENDING}.items():
            await core.ingest(text, source=source)
        query = "refund payment bank"
        keyword = await core.search(query, k=4, mode="keyword")
        hybrid = await core.search(query, k=4)
        assert [h.chunk_id for h in hybrid][: len(keyword)] == [h.chunk_id for h in keyword]
    finally:
        await core.aclose()


async def test_filters_apply_to_every_mode(core: SemanticCore) -> None:
    for mode in SearchMode:
        hits = await core.search("refund", k=5, mode=mode, filters={"source": "late.md"})
        expected = [] if mode is SearchMode.VECTOR else ["late.md"]
        assert [h.source for h in hits] == expected


async def test_vector_mode_is_the_store_search(
    core: SemanticCore, embedder: LexicalEmbedder
) -> None:
    hits = await core.search("refund purchase", k=4, mode="vector")
    direct = await core.store.search(await embedder.embed_query("refund purchase"), k=4)
    assert [(h.chunk_id, h.distance) for h in hits] == [(h.chunk_id, h.distance) for h in direct]
    assert [h.vector_rank for h in hits] == [1, 2, 3, 4]
    assert all(h.keyword_rank is None and h.found_by == ("vector",) for h in hits)


def test_query_terms_are_what_the_engines_receive() -> None:
    assert query_terms('"ERR_1234" -x NEAR os.path.join') == [
        "err_1234",
        "x",
        "near",
        "os.path.join",
        "err",
        "1234",
        "os",
        "path",
        "join",
    ]
