"""The in-memory BM25 index: FTS5's ranking and scores, in step with every write."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.adapters.sqlite import keyword_index as keyword_index_module
from asemantic.adapters.sqlite.keyword_index import KeywordIndex, index_tokens_of_row
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.keywords import index_terms, query_terms
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import SearchFilters
from tests.store.helpers import make_write, raw

SPACE = EmbeddingSpace(model="lexical-hash-v1", dimensions=256)
# Zipf-like: a few words in most chunks (low idf, many ties), many rare ones.
COMMON = ["the", "and", "retry", "error", "Quota", "batch", "file"]
RARE = [f"w{i}" for i in range(120)] + ["ERR_1234", "os.path.join", "getUserName", "naïve"]


def _text(rng: random.Random) -> str:
    words = [
        rng.choice(COMMON) if rng.random() < 0.55 else rng.choice(RARE)
        for _ in range(rng.randint(1, 40))
    ]
    return " ".join(words)


async def _open(path: Path, *, memory_index: bool = True, warm: bool = True) -> SqliteStore:
    """A store; with the index loaded first (``warm``), so every search is the index's."""
    store = await SqliteStore.open(path, space=SPACE, memory_index=memory_index)
    if warm and memory_index:
        assert await store.load_keyword_index()
    return store


async def _write(store: SqliteStore, rng: random.Random, source: str) -> None:
    texts = [_text(rng) for _ in range(rng.randint(1, 6))]
    await store.write_document(make_write(source, texts, metadata={"g": rng.randint(0, 2)}))


def _queries(rng: random.Random, count: int) -> list[list[str]]:
    out = [query_terms(q) for q in ("the", "retry error", "ERR_1234", "os.path.join quota")]
    for _ in range(count):
        words = [rng.choice(COMMON + RARE) for _ in range(rng.randint(1, 4))]
        out.append(query_terms(" ".join(words)))
    return out


FILTERS = [
    None,
    SearchFilters(metadata={"g": 1}),
    SearchFilters.from_mapping({"g": {"$in": [0, 2]}, "source": {"$ne": "doc3"}}),
    SearchFilters(sources=["doc1", "doc5", "doc9"]),
]


def _assert_same(mine: list[SearchHit], theirs: list[SearchHit]) -> None:
    assert [h.chunk_id for h in mine] == [h.chunk_id for h in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-12, abs=1e-12)
        assert (a.text, a.source, a.position) == (b.text, b.source, b.position)
        assert a.document_metadata == b.document_metadata
        assert a.embedding_status is b.embedding_status


async def _compare(
    index_store: SqliteStore, fts_store: SqliteStore, queries: list[list[str]]
) -> int:
    compared = 0
    for terms in queries:
        for filters in FILTERS:
            for k in (1, 7, 200):
                mine = await index_store.keyword_search(terms, k=k, filters=filters)
                theirs = await fts_store.keyword_search(terms, k=k, filters=filters)
                _assert_same(mine, theirs)
                compared += len(mine)
    return compared


def test_tokens_are_read_back_as_fts5_indexed_them() -> None:
    text = "Retry ERR_1234 with os.path.join, getUserName and NAÏVE Ünïcode"
    assert index_tokens_of_row(index_terms(text), None) == index_tokens_of_row(None, text)
    assert index_tokens_of_row("Retry Quota ÜBER", None) == ["retry", "quota", "Über"]
    assert index_tokens_of_row("", None) == []


async def test_same_ranking_and_scores_as_fts5_through_every_kind_of_write(
    db_path: Path,
) -> None:
    rng = random.Random(13)
    store = await _open(db_path)
    other = await _open(db_path)  # writes from another connection
    plain = await _open(db_path, memory_index=False)  # FTS5 with bm25()
    try:
        for d in range(30):
            await _write(store, rng, f"doc{d}")
        queries = _queries(rng, 25)
        assert await _compare(store, plain, queries) > 1000
        index = store._keywords
        assert index is not None and index.reloads == 1 and len(index) > 30
        for step in range(4):
            for d in rng.sample(range(30), 6):  # re-ingest: new chunks, old ones gone
                await _write(other if step % 2 else store, rng, f"doc{d}")
            await other.delete_document(f"doc{rng.randrange(30)}")
            await _write(other, rng, f"new{step}")
            await _compare(store, plain, queries[:10])
        assert index.reloads == 1  # caught up from the log, never reloaded
    finally:
        for opened in (store, other, plain):
            await opened.aclose()


async def test_compaction_changes_nothing(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_index_module, "_MIN_OVERLAY", 8)
    rng = random.Random(7)
    store = await _open(db_path)
    plain = await _open(db_path, memory_index=False)
    try:
        for d in range(10):
            await _write(store, rng, f"doc{d}")
        queries = _queries(rng, 10)
        await _compare(store, plain, queries)
        index = store._keywords
        assert index is not None
        layouts = set()
        for round_ in range(6):
            for d in range(0, 10, 2):
                await _write(store, rng, f"doc{(d + round_) % 10}")
            await _compare(store, plain, queries)
            state = index._state
            assert state is not None
            layouts.add(id(state.layout))
        assert len(layouts) > 1  # the overlay was folded into a new layout on the way
        assert index.reloads == 1
    finally:
        await store.aclose()
        await plain.aclose()


async def test_a_pending_chunk_is_found_by_the_next_search(db_path: Path) -> None:
    store = await _open(db_path)
    try:
        await store.write_document(make_write("a", ["retry the quota later"]))
        assert [h.source for h in await store.keyword_search(["quota"], k=5)] == ["a"]
        await store.write_document(make_write("b", ["ERR_1234 is a quota error"]))
        hits = await store.keyword_search(query_terms("ERR_1234"), k=5)
        assert [h.source for h in hits] == ["b"]
        assert hits[0].embedding_status is EmbeddingStatus.PENDING
        await store.write_document(make_write("b", ["nothing to see"]))  # changed text
        assert await store.keyword_search(query_terms("ERR_1234"), k=5) == []
    finally:
        await store.aclose()


async def test_writes_from_a_subprocess_are_seen(db_path: Path) -> None:
    store = await _open(db_path)
    try:
        await store.write_document(make_write("stay", ["retry the batch"]))
        await store.write_document(make_write("leave", ["retry the batch file"]))
        assert {h.source for h in await store.keyword_search(["retry"], k=5)} == {"stay", "leave"}
        script = textwrap.dedent(f"""
            import asyncio, sys
            from pathlib import Path
            sys.path.insert(0, {str(Path.cwd())!r})
            from tests.store.test_keyword_index import _open
            from tests.store.helpers import make_write
            async def main():
                s = await _open(Path({str(db_path)!r}))
                await s.write_document(make_write("child", ["retry retry ERR_1234"]))
                await s.delete_document("leave")
                await s.aclose()
            asyncio.run(main())
        """)
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", script], check=True, timeout=60
        )
        hits = await store.keyword_search(["retry"], k=5)
        assert [h.source for h in hits] == ["child", "stay"]
    finally:
        await store.aclose()


async def test_a_pruned_log_forces_a_reload(db_path: Path) -> None:
    store = await _open(db_path)
    other = await _open(db_path)
    try:
        await store.write_document(make_write("a", ["retry the quota"]))
        await store.keyword_search(["retry"], k=3)
        index = store._keywords
        assert index is not None and index.reloads == 1
        await other.write_document(make_write("late", ["retry retry"]))
        await other.write_document(make_write("later", ["retry once more"]))
        with raw(db_path) as conn:  # as keyword_log_prune would: all but the newest
            conn.execute("DELETE FROM keyword_log WHERE seq < (SELECT MAX(seq) FROM keyword_log)")
        await other.delete_document("a")
        hits = await store.keyword_search(["retry"], k=3)  # FTS5's, while it reloads
        assert sorted(h.source for h in hits) == ["late", "later"]
        await index.loaded()
        assert index.reloads == 2 and index.ready
        hits = await store.keyword_search(["retry"], k=3)
        assert sorted(h.source for h in hits) == ["late", "later"]
    finally:
        await store.aclose()
        await other.aclose()


async def test_the_log_is_added_to_a_file_without_it(db_path: Path) -> None:
    store = await _open(db_path)
    await store.write_document(make_write("a", ["retry the quota"]))
    await store.aclose()
    with raw(db_path) as conn:
        for name in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER chunks_keyword_log_{name}")
        conn.execute("DROP TRIGGER keyword_log_prune")
        conn.execute("DROP TABLE keyword_log")
    store = await _open(db_path)
    try:
        assert [h.source for h in await store.keyword_search(["quota"], k=3)] == ["a"]
        await store.write_document(make_write("b", ["quota quota"]))
        assert [h.source for h in await store.keyword_search(["quota"], k=3)] == ["b", "a"]
        with raw(db_path) as conn:
            assert conn.execute("SELECT count(*) FROM keyword_log").fetchone()[0] >= 1
    finally:
        await store.aclose()


async def test_a_chunk_gone_before_its_row_is_read_falls_back_to_fts5(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _open(db_path)
    try:
        await store.write_document(make_write("a", ["retry the quota"]))
        await store.write_document(make_write("b", ["retry"]))

        async def stale(
            self: KeywordIndex, terms: list[str], k: int, *, documents: object = None
        ) -> list[tuple[int, float]]:
            return [(10_000, 1.0)]  # a chunk that no longer exists

        monkeypatch.setattr(KeywordIndex, "top", stale)
        hits = await store.keyword_search(["retry"], k=3)
        assert {h.source for h in hits} == {"a", "b"}  # answered by FTS5
    finally:
        await store.aclose()


async def test_searches_are_answered_while_the_index_loads(db_path: Path) -> None:
    rng = random.Random(3)
    writer = await _open(db_path, memory_index=False)
    for d in range(20):
        await _write(writer, rng, f"doc{d}")
    await writer.aclose()
    store = await _open(db_path, warm=False)
    plain = await _open(db_path, memory_index=False)
    try:
        queries = _queries(rng, 5)
        # The first search starts the load and is answered by FTS5 meanwhile.
        assert await _compare(store, plain, queries) > 0
        index = store._keywords
        assert index is not None
        await index.loaded()
        assert index.reloads == 1 and len(index) > 20
        await _compare(store, plain, queries)
    finally:
        await store.aclose()
        await plain.aclose()


async def test_closing_during_a_load_stops_it(db_path: Path) -> None:
    store = await _open(db_path, warm=False)
    await store.write_document(make_write("a", ["retry the quota"]))
    assert [h.source for h in await store.keyword_search(["retry"], k=3)] == ["a"]
    index = store._keywords
    assert index is not None and index._loading is None  # a one-shot search loads nothing
    assert [h.source for h in await store.keyword_search(["retry"], k=3)] == ["a"]
    assert index._loading is not None or index.ready  # the second one starts the load
    await store.aclose()  # the load may be in flight: interrupted, its connection closed
    assert not index.ready and index._loading is None
    assert index.failed_loads == 0


async def test_without_the_memory_index_there_is_nothing_to_load(db_path: Path) -> None:
    store = await _open(db_path, memory_index=False, warm=False)
    try:
        assert await store.load_keyword_index() is False
        assert store._keywords is None
    finally:
        await store.aclose()


async def test_a_failed_load_is_reported_and_searches_go_on(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _open(db_path, warm=False)
    try:
        await store.write_document(make_write("a", ["retry the quota"]))

        async def refuse() -> object:
            raise OSError("no more file handles")

        index = store._keyword_index()
        assert index is not None
        monkeypatch.setattr(index, "_connect", refuse)
        assert await store.load_keyword_index() is False
        assert index.failed_loads == 1 and not index.ready
        assert [h.source for h in await store.keyword_search(["retry"], k=3)] == ["a"]
        monkeypatch.undo()
        assert await store.load_keyword_index() is True
        assert [h.source for h in await store.keyword_search(["retry"], k=3)] == ["a"]
    finally:
        await store.aclose()


async def test_a_load_in_many_batches_is_the_same_index(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_index_module, "_LOAD_BATCH", 7)
    monkeypatch.setattr(keyword_index_module, "_YIELD_EVERY", 3)
    rng = random.Random(21)
    writer = await _open(db_path, memory_index=False)
    for d in range(25):
        await _write(writer, rng, f"doc{d}")
    await writer.delete_document("doc4")  # a gap in the rowids
    await writer.aclose()
    store = await _open(db_path)  # loaded 7 rows at a time
    plain = await _open(db_path, memory_index=False)
    try:
        index = store._keywords
        assert index is not None and index.reloads == 1 and len(index) > 21
        assert await _compare(store, plain, _queries(rng, 20)) > 100
    finally:
        await store.aclose()
        await plain.aclose()
