"""A fresh database: schema, pragmas, the embedding space and the vector triggers."""

from __future__ import annotations

from pathlib import Path

import pytest

from asemantic.adapters.sqlite import CURRENT_VERSION, SqliteStore, vec_chunk_size
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import EmbeddingSpaceMismatchError, InvalidInputError
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, raw, scalar, statuses, vector_ids

EXPECTED_TABLES = {
    "documents",
    "chunks",
    "batch_jobs",
    "batch_job_transitions",
    "supervisor_lease",
    "embedding_space",
    "store_meta",
    "vec_chunks",
}


async def test_fresh_schema(store: SqliteStore, db_path: Path) -> None:
    with raw(db_path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert names >= EXPECTED_TABLES
        assert {"chunks_document_position", "chunks_status_job"} <= names
        assert {"chunks_vec_delete", "chunks_vec_unready"} <= names
        assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}
        assert {
            "content_hash",
            "embedding_status",
            "batch_job_id",
            "error_message",
            "attempts",
        } <= columns


async def test_store_connections_pragmas(store: SqliteStore) -> None:
    for conn in (store._writer, store._reader):
        assert list(await conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
        assert list(await conn.execute_fetchall("PRAGMA busy_timeout")) == [(5000,)]
        assert list(await conn.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]


async def test_busy_timeout_is_configurable(db_path: Path) -> None:
    store = await SqliteStore.open(db_path, busy_timeout_ms=250)
    try:
        assert list(await store._writer.execute_fetchall("PRAGMA busy_timeout")) == [(250,)]
    finally:
        await store.aclose()


async def test_check_constraints(store: SqliteStore, db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute(
            "INSERT INTO documents (source, content_hash, created_at) VALUES ('s', 'h', 'now')"
        )
        with pytest.raises(Exception, match="CHECK"):
            conn.execute(
                "INSERT INTO chunks (document_id, position, text, embedding_status) "
                "VALUES (1, 0, 't', 'LOST')"
            )
        with pytest.raises(Exception, match="CHECK"):
            conn.execute(
                "INSERT INTO batch_jobs (id, display_name, status) VALUES ('j', 'n', 'DONE')"
            )
        with pytest.raises(Exception, match="CHECK"):
            conn.execute("INSERT INTO supervisor_lease (id, owner) VALUES (2, 'me')")


async def test_space_is_recorded_and_reused(db_path: Path, embedder: LexicalEmbedder) -> None:
    async with await SqliteStore.open(db_path, space=embedder.space) as store:
        assert store.space == embedder.space
    async with await SqliteStore.open(db_path) as again:
        assert again.space == embedder.space
    ddl = scalar(db_path, "SELECT sql FROM sqlite_master WHERE name = 'vec_chunks'")
    assert "distance_metric=cosine" in ddl
    assert f"float[{embedder.space.dimensions}]" in ddl
    assert f"chunk_size={vec_chunk_size(embedder.space.dimensions)}" in ddl


async def test_another_space_is_refused(db_path: Path, embedder: LexicalEmbedder) -> None:
    async with await SqliteStore.open(db_path, space=embedder.space):
        pass
    other = EmbeddingSpace(model="gemini-embedding-001", dimensions=768)
    with pytest.raises(EmbeddingSpaceMismatchError) as info:
        await SqliteStore.open(db_path, space=other)
    assert embedder.space.describe() in str(info.value)
    assert other.describe() in str(info.value)
    same_dims_other_task = EmbeddingSpace(
        model=embedder.space.model, dimensions=embedder.space.dimensions, task_type="CLUSTERING"
    )
    with pytest.raises(EmbeddingSpaceMismatchError):
        await SqliteStore.open(db_path, space=same_dims_other_task)


async def test_space_can_be_set_later(db_path: Path, embedder: LexicalEmbedder) -> None:
    async with await SqliteStore.open(db_path) as store:
        assert store.space is None
        outcome = await store.write_document(make_write("a", ["one text", "two text"]))
        assert outcome.pending == 2
    async with await SqliteStore.open(db_path, space=embedder.space) as store:
        assert store.space == embedder.space
        assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 2, "FAILED": 0}
        assert await store.integrity_check() == "ok"


async def test_memory_databases_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        await SqliteStore.open(":memory:")


@pytest.mark.parametrize(
    ("dimensions", "expected"), [(1, 1024), (256, 1024), (768, 256), (1536, 128), (3072, 64)]
)
def test_vec_chunk_size(dimensions: int, expected: int) -> None:
    size = vec_chunk_size(dimensions)
    assert size == expected
    assert size % 8 == 0
    assert size * dimensions * 4 <= 1 << 20 or size == 8


async def test_vectors_follow_chunk_deletes_and_cascades(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    """A trigger on chunks may delete from vec0, also for rows a cascade deletes."""
    await store.write_document(make_write("a", ["alpha one", "alpha two"], embedder=embedder))
    await store.write_document(make_write("b", ["beta one", "beta two"], embedder=embedder))
    assert vector_ids(db_path) == [1, 2, 3, 4]
    with raw(db_path) as conn:
        conn.execute("DELETE FROM chunks WHERE id = 1")
    assert vector_ids(db_path) == [2, 3, 4]
    with raw(db_path) as conn:
        conn.execute("DELETE FROM documents WHERE source = 'b'")  # cascade to chunks 3, 4
        assert conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 1
    assert vector_ids(db_path) == [2]


async def test_a_chunk_leaving_ready_loses_its_vector(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", ["alpha", "beta", "gamma"], embedder=embedder))
    with raw(db_path) as conn:
        conn.execute("UPDATE chunks SET embedding_status = 'PENDING' WHERE id = 1")
        conn.execute("UPDATE chunks SET embedding_status = 'FAILED' WHERE id = 2")
        conn.execute("UPDATE chunks SET attempts = 3 WHERE id = 3")  # still READY
    assert vector_ids(db_path) == [3]
    assert statuses(db_path) == {1: "PENDING", 2: "FAILED", 3: "READY"}
    assert await store.integrity_check() == "ok"
