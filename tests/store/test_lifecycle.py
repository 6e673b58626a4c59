"""Opening, closing, transactions and the inspection helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.errors import StoreClosedError, StoreError
from asemantic.ports import Store
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, raw, scalar


def _accepts_store(store: Store) -> Store:
    return store


async def test_implements_the_store_port(store: SqliteStore) -> None:
    assert _accepts_store(store) is store
    assert "open" in repr(store)
    assert store.path.name == "kb.db"


async def test_aclose_is_idempotent_and_everything_after_it_fails(
    db_path: Path, embedder: LexicalEmbedder
) -> None:
    store = await SqliteStore.open(db_path, space=embedder.space)
    await store.aclose()
    await store.aclose()
    assert store.closed
    assert "closed" in repr(store)
    vector = embedder.vector("x")
    calls = [
        store.get_document("a"),
        store.write_document(make_write("a", ["x"])),
        store.delete_document("a"),
        store.bulk_update_vectors({1: vector}),
        store.search(vector, k=1),
        store.count_chunks_by_status(),
        store.integrity_check(),
        store.fetchall("SELECT 1"),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            await call
    with pytest.raises(StoreClosedError):
        async with store.transaction():
            pass


async def test_async_with_closes(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        assert not store.closed
    assert store.closed


async def test_transaction_commits_and_rolls_back(store: SqliteStore, db_path: Path) -> None:
    async with store.transaction() as conn:
        await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('a', 'a')")

    async def failing() -> None:
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('b', 'b')")
            raise KeyError("b")

    with pytest.raises(KeyError):
        await failing()
    assert scalar(db_path, "SELECT group_concat(id) FROM batch_jobs") == "a"
    assert not store._writer.in_transaction
    assert not store._lock.locked()


async def test_sqlite_errors_become_store_errors(store: SqliteStore) -> None:
    async def body() -> None:
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('a', 'a')")
            await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('a', 'a')")

    with pytest.raises(StoreError, match="UNIQUE"):
        await store._guard(body())
    assert not store._writer.in_transaction


async def test_counts_and_integrity(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 0, "FAILED": 0}
    await store.write_document(
        make_write("a", ["x one", "y two", "z three"], embedder=embedder, ready=[0])
    )
    with raw(db_path) as conn:
        conn.execute("UPDATE chunks SET embedding_status = 'FAILED' WHERE position = 2")
    assert await store.count_chunks_by_status() == {"READY": 1, "PENDING": 1, "FAILED": 1}
    assert await store.integrity_check() == "ok"
    with raw(db_path) as conn:
        conn.execute("DELETE FROM vec_chunks")
    assert "1 READY chunks have no vector" in await store.integrity_check()
    with raw(db_path) as conn:
        conn.execute(
            "INSERT INTO vec_chunks (rowid, embedding) VALUES (2, ?)", (embedder.vector("y"),)
        )
    report = await store.integrity_check()
    assert "1 vectors belong to no READY chunk" in report


async def test_fetchall_reads_and_never_writes(store: SqliteStore) -> None:
    await store.write_document(make_write("a", ["x one", "y two"]))
    assert await store.fetchall("SELECT position FROM chunks ORDER BY position") == [(0,), (1,)]
    assert await store.fetchall("SELECT source FROM documents WHERE id = ?", (1,)) == [("a",)]
    with pytest.raises(StoreError, match="readonly"):
        await store.fetchall("DELETE FROM chunks")
    assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 2, "FAILED": 0}
