"""bulk_update_vectors and apply_vectors: idempotent, validated, transactional."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.errors import InvalidVectorError
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, raw, statuses, unit, vector_ids

TEXTS = ["apples and pears", "rivers and lakes", "stars and planets"]


async def _pending(store: SqliteStore) -> list[int]:
    await store.write_document(make_write("a", TEXTS))
    snapshot = await store.get_document("a")
    assert snapshot is not None
    return [c.chunk_id for c in snapshot.chunks]


def _stored_vector(path: Path, chunk_id: int) -> bytes:
    with raw(path) as conn:
        rows = conn.execute("SELECT embedding FROM vec_chunks WHERE rowid = ?", (chunk_id,))
        return bytes(rows.fetchone()[0])


async def test_vectors_make_chunks_ready(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    ids = await _pending(store)
    mapping = {i: embedder.vector(t) for i, t in zip(ids, TEXTS, strict=True)}
    assert await store.bulk_update_vectors(mapping) == 3
    assert statuses(db_path) == dict.fromkeys(ids, "READY")
    assert vector_ids(db_path) == ids
    assert _stored_vector(db_path, ids[1]) == mapping[ids[1]]
    assert await store.integrity_check() == "ok"


async def test_a_write_larger_than_one_statement_stores_every_vector_in_place(
    store: SqliteStore,
    db_path: Path,
    embedder: LexicalEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asemantic.adapters.sqlite import vectors

    ids = await _pending(store)
    mapping = {i: embedder.vector(t) for i, t in zip(ids, TEXTS, strict=True)}
    # Two vectors per statement: the three chunks take two rounds of statements.
    monkeypatch.setattr(vectors, "_WRITE_BYTES", 2 * len(mapping[ids[0]]))
    assert await store.bulk_update_vectors(mapping) == 3
    assert statuses(db_path) == dict.fromkeys(ids, "READY")
    assert all(_stored_vector(db_path, i) == mapping[i] for i in ids)
    assert await store.integrity_check() == "ok"


async def test_applying_twice_leaves_one_vector_per_chunk(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    ids = await _pending(store)
    first = {i: embedder.vector(t) for i, t in zip(ids, TEXTS, strict=True)}
    second = {i: embedder.vector(t + " again") for i, t in zip(ids, TEXTS, strict=True)}
    assert await store.bulk_update_vectors(first) == 3
    assert await store.bulk_update_vectors(first) == 3
    assert await store.bulk_update_vectors(second) == 3
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM vec_chunks").fetchone()[0] == 3
    assert _stored_vector(db_path, ids[0]) == second[ids[0]]
    hits = await store.search(second[ids[2]], k=1)
    assert hits[0].chunk_id == ids[2]
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)


async def test_unknown_ids_are_skipped(store: SqliteStore, db_path: Path) -> None:
    ids = await _pending(store)
    vector = unit(np.arange(1, 257))
    assert await store.bulk_update_vectors({ids[0]: vector, 9999: vector, -5: vector}) == 1
    assert vector_ids(db_path) == [ids[0]]
    assert await store.bulk_update_vectors({}) == 0


async def test_bad_vector_writes_nothing(store: SqliteStore, db_path: Path) -> None:
    ids = await _pending(store)
    good = unit(np.arange(1, 257))
    wrong_dims = unit(np.arange(1, 769))
    with pytest.raises(InvalidVectorError, match="bytes"):
        await store.bulk_update_vectors({ids[0]: good, ids[1]: wrong_dims})
    with pytest.raises(InvalidVectorError):
        await store.bulk_update_vectors({ids[0]: good, ids[1]: b"\x00" * 1024})
    assert vector_ids(db_path) == []
    assert set(statuses(db_path).values()) == {"PENDING"}


async def test_error_cleared_and_job_kept(store: SqliteStore, db_path: Path) -> None:
    ids = await _pending(store)
    with raw(db_path) as conn:
        conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('job-1', 'n-1')")
        conn.execute(
            "UPDATE chunks SET batch_job_id = 'job-1', embedding_status = 'FAILED', "
            "error_message = 'quota', attempts = 2 WHERE id = ?",
            (ids[0],),
        )
    assert await store.bulk_update_vectors({ids[0]: unit(np.arange(1, 257))}) == 1
    with raw(db_path) as conn:
        row = conn.execute(
            "SELECT embedding_status, error_message, batch_job_id, attempts FROM chunks "
            "WHERE id = ?",
            (ids[0],),
        ).fetchone()
    assert row == ("READY", None, "job-1", 2)


async def test_apply_inside_an_outer_transaction(store: SqliteStore, db_path: Path) -> None:
    ids = await _pending(store)
    vector = unit(np.arange(1, 257))

    async def failing() -> None:
        async with store.transaction() as conn:
            assert await store.apply_vectors(conn, {ids[0]: vector}) == 1
            await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('j', 'n')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    assert vector_ids(db_path) == []
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM batch_jobs").fetchone()[0] == 0
    async with store.transaction() as conn:
        assert await store.apply_vectors(conn, {ids[0]: vector}) == 1
        await conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('j', 'n')")
    assert vector_ids(db_path) == [ids[0]]
    assert statuses(db_path)[ids[0]] == "READY"


async def test_no_space_no_vectors(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        await store.write_document(make_write("a", TEXTS))
        with pytest.raises(InvalidVectorError, match="space"):
            await store.bulk_update_vectors({1: unit([1.0, 2.0])})


async def test_vectors_given_as_float32_memoryviews_are_stored_as_their_bytes(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    ids = await _pending(store)
    blobs = {i: embedder.vector(t) for i, t in zip(ids, TEXTS, strict=True)}
    # Typed as bytes, but the checks accept any buffer: a float32 view counts floats.
    views = {i: memoryview(b).cast("f") for i, b in blobs.items()}
    assert len(views[ids[0]]) * 4 == len(blobs[ids[0]])
    assert await store.bulk_update_vectors(cast(dict[int, bytes], views)) == 3
    assert all(_stored_vector(db_path, i) == blobs[i] for i in ids)
