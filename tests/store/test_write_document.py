"""write_document, get_document and delete_document on a real file."""

from __future__ import annotations

import math
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.documents import Document, EmbeddingStatus
from asemantic.errors import InvalidInputError, InvalidVectorError
from asemantic.ports import DocumentWrite
from asemantic.testing import LexicalEmbedder

from .helpers import draft, make_write, raw, scalar, statuses, unit, vector_ids

TEXTS = ["the cat sat on the mat", "dogs bark at night", "birds sing at dawn"]


async def test_new_document_ready_and_pending(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    write = make_write("notes.md", TEXTS, embedder=embedder, ready=[0, 2], title="Notes")
    outcome = await store.write_document(write)
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (3, 0, 0, 1)
    snapshot = await store.get_document("notes.md")
    assert snapshot is not None
    assert snapshot.document_id == outcome.document_id
    assert snapshot.content_hash == write.content_hash
    assert [c.position for c in snapshot.chunks] == [0, 1, 2]
    assert [c.content_hash for c in snapshot.chunks] == [d.content_hash for d in write.drafts]
    assert [c.status for c in snapshot.chunks] == [
        EmbeddingStatus.READY,
        EmbeddingStatus.PENDING,
        EmbeddingStatus.READY,
    ]
    ready_ids = [c.chunk_id for c in snapshot.chunks if c.status is EmbeddingStatus.READY]
    assert vector_ids(db_path) == sorted(ready_ids)
    with raw(db_path) as conn:
        title, meta, created, updated = conn.execute(
            "SELECT title, metadata_json, created_at, updated_at FROM documents"
        ).fetchone()
        assert (title, meta) == ("Notes", "{}")
        assert created == updated
        assert created.endswith("+00:00")
        meta_json = conn.execute("SELECT meta_json FROM chunks WHERE position = 0").fetchone()[0]
    assert '"_vector_source":"the cat sat on the mat"' in meta_json
    assert '"heading_path":[]' in meta_json


async def test_unchanged_rewrite_keeps_everything(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    write = make_write("a", TEXTS, embedder=embedder, ready=[0])
    await store.write_document(write)
    before = await store.get_document("a")
    outcome = await store.write_document(replace(write, vectors={}))
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (0, 3, 0, 0)
    assert await store.get_document("a") == before
    assert len(vector_ids(db_path)) == 1


async def test_changed_and_removed_chunks(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", TEXTS, embedder=embedder))
    old = await store.get_document("a")
    assert old is not None
    changed = ["the cat sat on the mat", "dogs howl at the moon"]  # 2nd changed, 3rd gone
    outcome = await store.write_document(make_write("a", changed))
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (1, 1, 2, 1)
    new = await store.get_document("a")
    assert new is not None
    assert new.chunks[0].chunk_id == old.chunks[0].chunk_id  # kept, with its vector
    assert new.chunks[1].chunk_id not in {c.chunk_id for c in old.chunks}
    assert new.chunks[1].status is EmbeddingStatus.PENDING
    assert vector_ids(db_path) == [old.chunks[0].chunk_id]
    assert await store.integrity_check() == "ok"


async def test_kept_chunks_move_and_get_new_text(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", TEXTS, embedder=embedder))
    old = await store.get_document("a")
    assert old is not None
    inserted = make_write("a", ["a new opening line", *TEXTS], embedder=embedder, ready=[0])
    outcome = await store.write_document(inserted)
    assert (outcome.stored, outcome.unchanged, outcome.removed) == (1, 3, 0)
    new = await store.get_document("a")
    assert new is not None
    assert [c.chunk_id for c in new.chunks[1:]] == [c.chunk_id for c in old.chunks]
    assert [c.position for c in new.chunks] == [0, 1, 2, 3]
    with raw(db_path) as conn:
        rows = conn.execute("SELECT position, text FROM chunks ORDER BY position").fetchall()
    assert [r[1] for r in rows] == ["a new opening line", *TEXTS]


async def test_same_hash_with_new_text_updates_the_row(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    first = draft(0, "Hello world")
    await store.write_document(
        DocumentWrite(
            document=Document(text="x", source="a"),
            content_hash="1",
            drafts=[first],
            vectors={first.content_hash: embedder.vector(first.vector_source)},
        )
    )
    retyped = replace(first, text="Hello  world")  # same vector source, new display text
    outcome = await store.write_document(
        DocumentWrite(document=Document(text="x", source="a"), content_hash="2", drafts=[retyped])
    )
    assert (outcome.unchanged, outcome.stored) == (1, 0)
    assert scalar(db_path, "SELECT text FROM chunks") == "Hello  world"
    assert statuses(db_path) == {1: "READY"}


async def test_pending_chunks_keep_their_batch_job(store: SqliteStore, db_path: Path) -> None:
    await store.write_document(make_write("a", TEXTS))
    with raw(db_path) as conn:
        conn.execute("INSERT INTO batch_jobs (id, display_name) VALUES ('job-1', 'asemantic-1')")
        conn.execute("UPDATE chunks SET batch_job_id = 'job-1'")
    outcome = await store.write_document(make_write("a", TEXTS[:2]))
    assert (outcome.unchanged, outcome.removed) == (2, 1)
    with raw(db_path) as conn:
        jobs = conn.execute("SELECT DISTINCT batch_job_id FROM chunks").fetchall()
    assert jobs == [("job-1",)]


async def test_failed_chunks_are_replaced(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", TEXTS))
    with raw(db_path) as conn:
        conn.execute(
            "UPDATE chunks SET embedding_status = 'FAILED', error_message = 'x' WHERE id = 2"
        )
    outcome = await store.write_document(make_write("a", TEXTS, embedder=embedder, ready=[1]))
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (1, 2, 1, 0)
    assert statuses(db_path) == {1: "PENDING", 3: "PENDING", 4: "READY"}
    assert vector_ids(db_path) == [4]


async def test_repeated_text_shares_the_kept_vector(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", ["same words", "other words"], embedder=embedder))
    outcome = await store.write_document(
        make_write("a", ["same words", "other words", "same words"])
    )
    assert (outcome.stored, outcome.unchanged, outcome.pending) == (1, 2, 0)
    assert statuses(db_path) == {1: "READY", 2: "READY", 3: "READY"}
    with raw(db_path) as conn:
        one, three = (
            conn.execute("SELECT embedding FROM vec_chunks WHERE rowid = ?", (i,)).fetchone()[0]
            for i in (1, 3)
        )
    assert one == three


async def test_title_and_metadata_are_updated(store: SqliteStore, db_path: Path) -> None:
    await store.write_document(make_write("a", TEXTS, title="Old", metadata={"v": 1}))
    await store.write_document(make_write("a", TEXTS, title="New", metadata={"v": 2, "k": "x"}))
    with raw(db_path) as conn:
        rows = conn.execute("SELECT title, metadata_json FROM documents").fetchall()
    assert rows == [("New", '{"k":"x","v":2}')]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00" * 12,
        unit([1.0] * 255) + b"\x00\x00\x80\x7f",  # last value is +inf
        b"\x00" * (256 * 4),
        "not bytes",
    ],
    ids=["short", "infinite", "zero", "str"],
)
async def test_bad_vector_writes_nothing(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder, bad: object
) -> None:
    await store.write_document(make_write("a", TEXTS[:1], embedder=embedder))
    before = await store.get_document("a")
    write = make_write("a", TEXTS, embedder=embedder)
    vectors = dict(write.vectors)
    vectors[write.drafts[2].content_hash] = bad  # type: ignore[assignment]
    with pytest.raises(InvalidVectorError):
        await store.write_document(replace(write, vectors=vectors))
    with pytest.raises(InvalidVectorError):
        await store.write_document(
            replace(write, document=Document(text="x", source="b"), vectors=vectors)
        )
    assert await store.get_document("a") == before
    assert await store.get_document("b") is None
    assert len(vector_ids(db_path)) == 1


async def test_nan_vector_is_refused(store: SqliteStore, embedder: LexicalEmbedder) -> None:
    write = make_write("a", TEXTS[:1])
    nan = unit([1.0] * 256)[:-4] + bytes.fromhex("0000c07f")
    assert math.isnan(struct.unpack("<f", nan[-4:])[0])
    with pytest.raises(InvalidVectorError, match="NaN"):
        await store.write_document(replace(write, vectors={write.drafts[0].content_hash: nan}))
    assert await store.get_document("a") is None


async def test_bad_input_writes_nothing(store: SqliteStore) -> None:
    write = make_write("a", TEXTS)
    with pytest.raises(InvalidInputError, match="position"):
        await store.write_document(replace(write, drafts=[write.drafts[0], write.drafts[0]]))
    bad_meta = Document(text="x", source="a", metadata={"when": object()})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        await store.write_document(replace(write, document=bad_meta))
    with pytest.raises(InvalidInputError, match="source"):
        await store.write_document(replace(write, document=Document(text="x", source="")))
    assert await store.get_document("a") is None


async def test_delete_document(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", TEXTS, embedder=embedder))
    await store.write_document(make_write("b", TEXTS[:1], embedder=embedder))
    assert await store.delete_document("a") is True
    assert await store.delete_document("a") is False
    assert await store.delete_document("never") is False
    assert await store.get_document("a") is None
    assert vector_ids(db_path) == [4]
    assert await store.count_chunks_by_status() == {"READY": 1, "PENDING": 0, "FAILED": 0}
    assert await store.integrity_check() == "ok"


async def test_empty_document_has_no_chunks(store: SqliteStore) -> None:
    outcome = await store.write_document(make_write("a", []))
    assert outcome.stored == 0
    snapshot = await store.get_document("a")
    assert snapshot is not None
    assert snapshot.chunks == ()
