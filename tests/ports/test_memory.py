"""What is particular to the memory engine: its rollback, its space rule, its exports.

The behaviour it shares with every engine is in the contract tests beside this file.
"""

from __future__ import annotations

import asyncio

import pytest

import asemantic.adapters.memory
import asemantic.testing
from asemantic.adapters.memory.database import ChunkRow, Database, Journal, Tables
from asemantic.domain.documents import EmbeddingStatus
from asemantic.errors import InvalidVectorError
from asemantic.ports import JobStore, Store
from asemantic.testing import MemoryStore

from .builders import AXIS, chunk_ids, make_write, vec
from .conftest import SPACE


def test_memory_store_is_exported_and_is_a_store() -> None:
    assert asemantic.testing.MemoryStore is asemantic.adapters.memory.MemoryStore
    store: Store = MemoryStore(space=SPACE)
    jobs: JobStore = store.jobs
    assert jobs is store.jobs
    assert "open" in repr(store)


def _chunk(chunk_id: int, status: EmbeddingStatus) -> ChunkRow:
    return ChunkRow(
        chunk_id=chunk_id,
        document_id=1,
        position=chunk_id,
        text="t",
        meta_json="{}",
        vector_source="t",
        heading_path=(),
        content_hash="h",
        token_estimate=1,
        status=status,
    )


async def test_a_failing_write_leaves_every_table_as_it_was() -> None:
    db = Database(SPACE)

    def seed(tables: Tables, journal: Journal) -> None:
        journal.put_chunk(_chunk(1, EmbeddingStatus.READY))
        journal.put(tables.vectors, 1, vec(1))
        journal.put(tables.usage, "online", 5)

    await db.write(seed)
    before = (dict(db.tables.chunks), dict(db.tables.vectors), dict(db.tables.chunks_of))
    generation = db.tables.generation

    def broken(tables: Tables, journal: Journal) -> None:
        journal.put_chunk(_chunk(2, EmbeddingStatus.PENDING))
        journal.drop_chunk(1)
        journal.put(tables.usage, "online", 99)
        journal.put(tables.usage, "batch", 1)
        tables.next_id(journal, "chunk")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.write(broken)
    assert (dict(db.tables.chunks), dict(db.tables.vectors), dict(db.tables.chunks_of)) == before
    assert db.tables.usage == {"online": 5}
    assert db.tables.counters == {}
    assert db.tables.generation > generation  # search caches rebuild after an undo


async def test_a_chunk_leaving_ready_loses_its_vector() -> None:
    db = Database(SPACE)

    def work(tables: Tables, journal: Journal) -> None:
        journal.put_chunk(_chunk(1, EmbeddingStatus.READY))
        journal.put(tables.vectors, 1, vec(1))
        journal.put_chunk(_chunk(1, EmbeddingStatus.PENDING))

    await db.write(work)
    assert db.tables.vectors == {}


async def test_without_a_space_vectors_are_refused_and_pending_chunks_kept() -> None:
    store = MemoryStore()
    assert store.space is None
    with pytest.raises(InvalidVectorError):
        await store.write_document(make_write("doc.md", ["a"], vectors={0: vec(1)}))
    await store.write_document(make_write("doc.md", ["a"]))
    [chunk] = await chunk_ids(store, "doc.md")
    with pytest.raises(InvalidVectorError):
        await store.bulk_update_vectors({chunk: vec(1)})
    with pytest.raises(InvalidVectorError):
        await store.search(AXIS, k=1)
    assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 1, "FAILED": 0}


async def test_a_write_cancelled_before_it_runs_changes_nothing() -> None:
    store = MemoryStore(space=SPACE)
    task = asyncio.create_task(store.write_document(make_write("doc.md", ["a"])))
    await asyncio.sleep(0)  # the write is now waiting at its checkpoint
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_document("doc.md") is None


async def test_concurrent_writes_all_land() -> None:
    store = MemoryStore(space=SPACE)
    await asyncio.gather(
        *(store.write_document(make_write(f"d{i}.md", [f"text {i}"])) for i in range(20))
    )
    assert (await store.stats()).documents == 20
    assert len({c for i in range(20) for c in await chunk_ids(store, f"d{i}.md")}) == 20
    assert await store.integrity_check() == "ok"


async def test_async_with_closes() -> None:
    async with MemoryStore(space=SPACE) as store:
        assert not store.closed
    assert store.closed
    assert "closed" in repr(store)
