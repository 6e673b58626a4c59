"""The in-memory search index: exact, and in step with every committed write."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.adapters.sqlite import memory_index as memindex_module
from asemantic.adapters.sqlite.matrix import RowFiller, VectorMatrix
from asemantic.domain.documents import JSONValue
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import DocumentWrite, SearchFilters
from tests.store.helpers import make_write, raw

DIMS = 32
SPACE = EmbeddingSpace(model="random-test", dimensions=DIMS)


def vector_write(
    source: str,
    vectors: np.ndarray,
    *,
    metadata: Mapping[str, JSONValue] | None = None,
    tag: str = "chunk",
) -> DocumentWrite:
    """A document whose chunks carry ``vectors`` (one per chunk, any norm)."""
    write = make_write(
        source, [f"{source} {tag} {i}" for i in range(len(vectors))], metadata=metadata
    )
    ready = {d.content_hash: vectors[i].astype("<f4").tobytes() for i, d in enumerate(write.drafts)}
    return replace(write, vectors=ready)


async def fill(store: SqliteStore, docs: int, per_doc: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((docs * per_doc, DIMS)).astype(np.float32)
    for d in range(docs):
        block = vectors[d * per_doc : (d + 1) * per_doc]
        await store.write_document(vector_write(f"doc{d}", block, metadata={"g": d % 3}))
    return vectors


async def open_store(path: Path, *, memory_index: bool = True) -> SqliteStore:
    return await SqliteStore.open(path, space=SPACE, memory_index=memory_index)


def query(seed: int) -> bytes:
    return np.random.default_rng(1000 + seed).standard_normal(DIMS).astype("<f4").tobytes()


async def ids_of(store: SqliteStore, q: bytes, k: int = 10, **kw: object) -> list[int]:
    return [h.chunk_id for h in await store.search(q, k=k, **kw)]  # type: ignore[arg-type]


# --- the matrix alone --------------------------------------------------------------------


def test_matrix_matches_brute_force_through_upserts_and_removals() -> None:
    rng = np.random.default_rng(5)
    matrix = VectorMatrix(8)
    truth: dict[int, np.ndarray] = {}
    for step in range(300):
        ids = rng.integers(1, 200, size=5).tolist()
        if step % 3 == 0:
            matrix.remove(ids)
            for i in ids:
                truth.pop(i, None)
        else:
            ids = list(dict.fromkeys(ids))
            rows = rng.standard_normal((len(ids), 8)).astype(np.float32)
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            matrix.upsert(ids, rows, [i % 7 for i in ids])
            truth.update(zip(ids, rows, strict=True))
    assert sorted(matrix.ids().tolist()) == sorted(truth)
    q = rng.standard_normal(8).astype(np.float32)
    keys = sorted(truth)
    dist = {i: 1 - float(truth[i] @ (q / np.linalg.norm(q))) for i in keys}
    expected = sorted(keys, key=lambda i: (dist[i], i))[:7]
    got, distances = matrix.search(q, 7)
    assert got.tolist() == expected
    assert np.allclose(distances, [dist[i] for i in expected], atol=1e-6)
    for documents in ([3], [0, 5], [1, 2, 4, 6, 100, -1]):
        got, _ = matrix.search(q, 7, documents=np.array(documents, dtype=np.int64))
        chosen = [i for i in keys if i % 7 in documents]
        assert got.tolist() == sorted(chosen, key=lambda i: (dist[i], i))[:7]


# --- against vec0 ------------------------------------------------------------------------


async def test_same_hits_as_vec0(db_path: Path) -> None:
    store = await open_store(db_path)
    plain = await open_store(db_path, memory_index=False)
    try:
        await fill(store, docs=30, per_doc=20)
        for seed in range(15):
            q = query(seed)
            for filters in (
                None,
                SearchFilters(metadata={"g": 1}),
                SearchFilters(sources=["doc3", "doc7"]),
            ):
                mine = await store.search(q, k=25, filters=filters)
                theirs = await plain.search(q, k=25, filters=filters)
                assert [h.chunk_id for h in mine] == [h.chunk_id for h in theirs]
                assert [h.text for h in mine] == [h.text for h in theirs]
                for a, b in zip(mine, theirs, strict=True):
                    assert a.distance == pytest.approx(b.distance, abs=1e-5)
                    assert (a.source, a.document_metadata) == (b.source, b.document_metadata)
    finally:
        await store.aclose()
        await plain.aclose()


async def test_distances_match_vec_distance_cosine(db_path: Path) -> None:
    store = await open_store(db_path)
    try:
        await fill(store, docs=5, per_doc=20)
        q = query(1)
        hits = await store.search(q, k=100)
    finally:
        await store.aclose()
    with raw(db_path) as conn:
        rows = conn.execute(
            "SELECT rowid, vec_distance_cosine(embedding, ?) AS d FROM vec_chunks "
            "ORDER BY d, rowid",
            (q,),
        ).fetchall()
    assert [h.chunk_id for h in hits] == [int(r[0]) for r in rows]
    assert np.allclose([h.distance or 0.0 for h in hits], [float(r[1]) for r in rows], atol=1e-5)
    assert all(h.distance is not None for h in hits)


# --- in step with writes ------------------------------------------------------------------


async def test_writes_through_another_store_are_seen(db_path: Path) -> None:
    store = await open_store(db_path)
    other = await open_store(db_path)
    try:
        await fill(store, docs=4, per_doc=10)
        q = query(3)
        before = await ids_of(store, q)  # loads the index
        target = np.frombuffer(q, "<f4").reshape(1, DIMS)
        await other.write_document(vector_write("fresh", target))
        fresh = (await store.search(q, k=1))[0]
        assert fresh.source == "fresh"
        assert fresh.distance == pytest.approx(0, abs=1e-6)
        await other.delete_document("fresh")
        assert await ids_of(store, q) == before
        # Re-ingest doc0 with other vectors: its old chunks never come back.
        old = {
            h.chunk_id for h in await store.search(q, k=40, filters=SearchFilters(sources=["doc0"]))
        }
        await other.write_document(vector_write("doc0", -np.ones((3, DIMS), np.float32), tag="v2"))
        now = await store.search(q, k=100)
        assert not old & {h.chunk_id for h in now}
        assert sum(h.source == "doc0" for h in now) == 3
    finally:
        await store.aclose()
        await other.aclose()


async def test_status_leaving_ready_drops_the_chunk(db_path: Path) -> None:
    store = await open_store(db_path)
    try:
        await fill(store, docs=3, per_doc=10)
        q = query(4)
        first = (await store.search(q, k=1))[0].chunk_id
        with raw(db_path) as conn:
            conn.execute("UPDATE chunks SET embedding_status = 'PENDING' WHERE id = ?", (first,))
        assert first not in await ids_of(store, q, k=30)
        assert len(await ids_of(store, q, k=30)) == 29
        await store.bulk_update_vectors({first: q})
        hit = (await store.search(q, k=1))[0]
        assert hit.chunk_id == first
        assert hit.distance == pytest.approx(0, abs=1e-6)
    finally:
        await store.aclose()


async def test_write_from_a_subprocess_is_seen(db_path: Path) -> None:
    store = await open_store(db_path)
    try:
        await fill(store, docs=2, per_doc=10)
        q = query(5)
        await store.search(q, k=3)
        script = textwrap.dedent(f"""
            import asyncio, sys
            import numpy as np
            sys.path.insert(0, {str(Path.cwd())!r})
            from tests.store.test_memindex import open_store, vector_write, query
            async def main():
                s = await open_store(__import__("pathlib").Path({str(db_path)!r}))
                v = np.frombuffer(query(5), "<f4").reshape(1, -1)
                await s.write_document(vector_write("from-child", v))
                await s.delete_document("doc1")
                await s.aclose()
            asyncio.run(main())
        """)
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", script], check=True, timeout=60
        )
        hits = await store.search(q, k=20)
        assert hits[0].source == "from-child"
        assert {h.source for h in hits} == {"from-child", "doc0"}
        assert len(hits) == 11
    finally:
        await store.aclose()


async def test_a_pruned_log_forces_a_reload(db_path: Path) -> None:
    store = await open_store(db_path)
    other = await open_store(db_path)
    try:
        await fill(store, docs=2, per_doc=10)
        q = query(6)
        await store.search(q, k=3)
        index = store._index
        assert index is not None and index.reloads == 1
        await other.write_document(vector_write("late", np.frombuffer(q, "<f4").reshape(1, -1)))
        with raw(db_path) as conn:  # as vector_log_prune would, far behind us
            conn.execute("DELETE FROM vector_log")
        await other.delete_document("doc0")
        hits = await store.search(q, k=30)
        assert index.reloads == 2
        assert hits[0].source == "late"
        assert {h.source for h in hits} == {"late", "doc1"}
    finally:
        await store.aclose()
        await other.aclose()


async def test_concurrent_writes_and_searches_stay_consistent(db_path: Path) -> None:
    store = await open_store(db_path)
    other = await open_store(db_path)
    try:
        await fill(store, docs=5, per_doc=10)
        rng = np.random.default_rng(9)

        async def writer(n: int, via: SqliteStore) -> None:
            for j in range(6):
                v = rng.standard_normal((1, DIMS)).astype(np.float32)
                source = f"w{n}-{j}"
                await via.write_document(vector_write(source, v))
                hit = (await store.search(v.tobytes(), k=1))[0]
                assert hit.source == source  # committed, so visible to the next search
                await via.delete_document(source)
                assert source not in {h.source for h in await store.search(v.tobytes(), k=5)}

        async def searcher() -> None:
            for s in range(15):
                hits = await store.search(query(s), k=10)
                assert len(hits) == 10
                assert len({h.chunk_id for h in hits}) == 10

        await asyncio.gather(
            *(writer(n, store if n % 2 else other) for n in range(6)),
            *(searcher() for _ in range(6)),
        )
        plain = await open_store(db_path, memory_index=False)
        try:
            for s in range(5):
                assert await ids_of(store, query(s)) == await ids_of(plain, query(s))
        finally:
            await plain.aclose()
    finally:
        await store.aclose()
        await other.aclose()


async def test_filtered_search_returns_k_whenever_k_match(db_path: Path) -> None:
    store = await open_store(db_path)
    try:
        await fill(store, docs=20, per_doc=10)
        for seed in range(5):
            hits = await store.search(query(seed), k=10, filters=SearchFilters(sources=["doc13"]))
            assert len(hits) == 10 and {h.source for h in hits} == {"doc13"}
            some = await store.search(query(seed), k=50, filters=SearchFilters(metadata={"g": 2}))
            assert len(some) == 50 and {h.document_metadata["g"] for h in some} == {2}
        assert await store.search(query(0), k=5, filters=SearchFilters(sources=["none"])) == []
    finally:
        await store.aclose()


async def test_unusual_vec0_storage_falls_back_to_a_row_scan(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memindex_module, "_SHADOW", "SELECT 1, x'00', x'00', x'00'")
    store = await open_store(db_path)
    plain = await open_store(db_path, memory_index=False)
    try:
        await fill(store, docs=3, per_doc=10)
        assert await ids_of(store, query(2), k=30) == await ids_of(plain, query(2), k=30)
    finally:
        await store.aclose()
        await plain.aclose()


async def test_filters_follow_documents_deleted_and_recreated(db_path: Path) -> None:
    """Filters are masks over the documents the index holds per row: deleting the last
    document and writing another (SQLite hands out its id and its chunk ids again), or
    one in the middle (rows move in the matrix), from another connection, must leave
    filtered hits equal to vec0's."""
    store = await open_store(db_path)
    writer = await open_store(db_path, memory_index=False)
    plain = await open_store(db_path, memory_index=False)
    rng = np.random.default_rng(21)
    try:
        await fill(store, docs=6, per_doc=8)
        await store.search(query(0), k=5)  # loaded before the writes below
        last = "doc5"
        for step in range(8):
            # Even steps delete the newest document (its id and chunk ids come back for
            # the next write), odd ones one in the middle (rows move, ids are fresh).
            gone = last if step % 2 == 0 else f"doc{step // 2}"
            assert await writer.delete_document(gone)
            last = f"new{step}"
            vectors = rng.standard_normal((8, DIMS)).astype(np.float32)
            await writer.write_document(
                vector_write(last, vectors, metadata={"g": step % 3}, tag="new")
            )
            ids = await writer.fetchall("SELECT id FROM documents ORDER BY id")
            for filters in (
                SearchFilters(document_ids=[int(ids[-1][0])]),
                SearchFilters(metadata={"g": step % 3}),
                SearchFilters(sources=[gone, last, "doc4"]),
            ):
                mine = await store.search(query(step), k=12, filters=filters)
                theirs = await plain.search(query(step), k=12, filters=filters)
                assert [h.chunk_id for h in mine] == [h.chunk_id for h in theirs]
                assert [h.source for h in mine] == [h.source for h in theirs]
    finally:
        await store.aclose()
        await writer.aclose()
        await plain.aclose()


async def test_a_load_skips_the_holes_deletions_leave_in_vec0(db_path: Path) -> None:
    """Deleted rows stay in vec0's chunks as cleared validity bits; a fresh load must
    skip exactly those (compared with vec0 over every chunk)."""
    writer = await open_store(db_path, memory_index=False)
    try:
        await fill(writer, docs=12, per_doc=30)
        for d in (0, 3, 4, 10):
            assert await writer.delete_document(f"doc{d}")
        fresh = await open_store(db_path)
        try:
            for seed in range(3):
                everything = 8 * 30
                mine = await ids_of(fresh, query(seed), k=everything + 5)
                assert mine == await ids_of(writer, query(seed), k=everything + 5)
                assert len(mine) == everything
        finally:
            await fresh.aclose()
    finally:
        await writer.aclose()


async def test_a_load_decodes_vectors_off_the_event_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a large index copies every vector: that work runs on worker threads,
    never on the thread of the event loop (a web app's other requests keep being
    served). "Large" is lowered here so that a small file counts."""
    monkeypatch.setattr(memindex_module, "_INLINE_FLOATS", 0)
    threads: list[int] = []
    for name in ("add_shadow", "add_rows"):
        original = getattr(RowFiller, name)

        def spy(self: RowFiller, batch: object, _original: Any = original) -> object:
            threads.append(threading.get_ident())
            return _original(self, batch)

        monkeypatch.setattr(RowFiller, name, spy)
    store = await open_store(db_path)
    try:
        await fill(store, docs=4, per_doc=10)
        await store.search(query(0), k=3)
        monkeypatch.setattr(memindex_module, "_SHADOW", "SELECT 1, x'00', x'00', x'00'")
        other = await open_store(db_path)  # the row-by-row fallback
        try:
            await other.search(query(0), k=3)
        finally:
            await other.aclose()
    finally:
        await store.aclose()
    assert len(threads) >= 3
    assert threading.get_ident() not in threads


def _index_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("asemantic-search")]


async def test_no_index_thread_outlives_the_store(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small index never starts a thread; a large one's threads are gone once the
    store is closed (a process may fork right after, as servers and test harnesses do)."""
    assert _index_threads() == []
    store = await open_store(db_path)
    try:
        await fill(store, docs=3, per_doc=10)
        await store.search(query(0), k=3)
        assert _index_threads() == []
    finally:
        await store.aclose()
    monkeypatch.setattr(memindex_module, "_INLINE_FLOATS", 0)
    store = await open_store(db_path)
    try:
        await store.search(query(1), k=3)
        assert _index_threads() != []
    finally:
        await store.aclose()
    assert _index_threads() == []
