"""Schema version 2's spaces on SQLite itself: a version-1 file upgrades in place with
its space as the active space 1 (nothing moves), per-space vec0 tables and their
triggers follow chunk deletions, and a drop removes the space's table."""

from __future__ import annotations

from pathlib import Path

from asemantic.adapters.sqlite import CURRENT_VERSION, SqliteStore
from asemantic.adapters.sqlite.spaces import SPACE_DDL
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import StoredSpaceState
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, raw, scalar

SPACE = EmbeddingSpace(dimensions=768)
NEW = EmbeddingSpace(dimensions=256)
_V2_TABLES = ("space_batch_job_transitions", "space_chunks", "space_batch_jobs", "embedding_spaces")


async def _file_with_two_documents(path: Path) -> list[tuple[int, bytes]]:
    embedder = LexicalEmbedder(SPACE)
    async with await SqliteStore.open(path, space=SPACE) as store:
        await store.write_document(
            make_write("a.md", ["alpha one", "alpha two"], embedder=embedder)
        )
        await store.write_document(make_write("b.md", ["beta one"], embedder=embedder))
        return await store.vector_rows()


def _downgrade_to_version_1(path: Path) -> None:
    """The file as version 1 wrote it: no space tables, ``user_version`` 1."""
    with raw(path) as conn:
        for table in _V2_TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("PRAGMA user_version = 1")


async def test_a_version_1_file_upgrades_with_its_space_active(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    vectors = await _file_with_two_documents(path)
    _downgrade_to_version_1(path)
    assert scalar(path, "PRAGMA user_version") == 1
    async with await SqliteStore.open(path, space=SPACE) as store:
        records = await store.spaces.list_spaces()
        assert [(r.space_id, r.space, r.stored) for r in records] == [
            (1, SPACE, StoredSpaceState.ACTIVE)
        ]
        assert records[0].progress.ready == records[0].progress.total == 3
        assert await store.vector_rows() == vectors  # nothing moved
        assert await store.integrity_check() == "ok"
    assert scalar(path, "PRAGMA user_version") == CURRENT_VERSION
    assert len(SPACE_DDL) >= len(_V2_TABLES)


async def test_space_vectors_follow_their_chunks_and_a_drop_removes_the_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kb.db"
    await _file_with_two_documents(path)
    async with await SqliteStore.open(path, space=SPACE) as store:
        record = await store.spaces.register(NEW)
        jobs = store.spaces.jobs(record.space_id, NEW)
        queued = await jobs.queued_chunks()
        assert len(queued) == 3
        lexical = LexicalEmbedder(NEW)
        from asemantic.adapters.sqlite.spaces import apply_space_vectors

        async with store.transaction() as conn:
            mapping = {q.chunk_id: lexical.vector(f"chunk {q.chunk_id}") for q in queued}
            assert await apply_space_vectors(conn, record.space_id, mapping, "now") == 3
        assert len(await store.spaces.vector_rows(record.space_id)) == 3
        assert await store.delete_document("a.md")  # cascade + trigger: two vectors go
        assert [i for i, _ in await store.spaces.vector_rows(record.space_id)] == [3]
        assert await store.integrity_check() == "ok"
        assert await store.spaces.drop(record.space_id) == 1
        table = f"vec_space_{record.space_id}"
        gone = await store.fetchall("SELECT COUNT(*) FROM sqlite_master WHERE name = ?", (table,))
        assert gone == [(0,)]
        assert await store.integrity_check() == "ok"
