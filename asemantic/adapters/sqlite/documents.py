"""Document and chunk rows: snapshot reads and the write transaction, in SQL.

The store reads the document's stored chunks, asks
:func:`~asemantic.adapters.planning.plan_write` what to do (the rules of
:class:`asemantic.ports.DocumentWrite`, decided in engine-neutral code shared with every
engine, as are the canonical JSON dumper and the per-chunk meta text), and then does it
in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from asemantic.adapters.planning import (
    ExistingChunk,
    WritePlan,
    plan_write,
)
from asemantic.adapters.sqlite.keywords import index_chunks
from asemantic.domain.documents import EmbeddingStatus
from asemantic.ports import DocumentSnapshot, DocumentWrite, StoredChunk, WriteOutcome

__all__ = ["SELECT_SNAPSHOT", "delete", "snapshot_from_rows", "write"]


SELECT_SNAPSHOT = (
    "SELECT d.id, d.source, d.content_hash, c.id, c.position, c.content_hash, "
    "c.embedding_status FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
    "WHERE d.source = ? ORDER BY c.position, c.id"
)

_UPSERT_DOCUMENT = (
    "INSERT INTO documents (source, title, content_hash, metadata_json, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
    "title = excluded.title, content_hash = excluded.content_hash, "
    "metadata_json = excluded.metadata_json, updated_at = excluded.updated_at"
)
_SELECT_EXISTING = (
    "SELECT d.id, (SELECT COALESCE(MAX(id), 0) FROM chunks), c.id, c.position, "
    "c.content_hash, c.embedding_status, c.text, c.meta_json "
    "FROM documents d LEFT JOIN chunks c ON c.document_id = d.id WHERE d.source = ?"
)
_INSERT_CHUNK = (
    "INSERT INTO chunks (id, document_id, position, text, meta_json, content_hash, "
    "embedding_status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_CHUNK = (
    "UPDATE chunks SET position = ?, text = ?, meta_json = ?, updated_at = ? WHERE id = ?"
)


def snapshot_from_rows(rows: Sequence[Sequence[Any]]) -> DocumentSnapshot | None:
    if not rows:
        return None
    document_id, source, content_hash = rows[0][:3]
    chunks = tuple(
        StoredChunk(
            chunk_id=int(row[3]),
            position=int(row[4]),
            content_hash=str(row[5]),
            status=EmbeddingStatus(row[6]),
        )
        for row in rows
        if row[3] is not None
    )
    return DocumentSnapshot(
        document_id=int(document_id),
        source=str(source),
        content_hash=str(content_hash),
        chunks=chunks,
    )


async def _upsert(
    conn: aiosqlite.Connection, write: DocumentWrite, *, metadata_json: str, now: str
) -> tuple[int, int, list[ExistingChunk]]:
    """Upsert the document row; return its id, the largest chunk id and its chunks."""
    document = write.document
    await conn.execute(
        _UPSERT_DOCUMENT,
        (document.source, document.title, write.content_hash, metadata_json, now, now),
    )
    rows = list(await conn.execute_fetchall(_SELECT_EXISTING, (document.source,)))
    document_id, max_id = int(rows[0][0]), int(rows[0][1])
    existing = [
        ExistingChunk(
            chunk_id=int(row[2]),
            position=int(row[3]),
            content_hash=str(row[4]),
            status=str(row[5]),
            text=str(row[6]),
            meta_json=str(row[7]),
        )
        for row in rows
        if row[2] is not None
    ]
    return document_id, max_id, existing


async def write(
    conn: aiosqlite.Connection, write: DocumentWrite, *, metadata_json: str, now: str
) -> WriteOutcome:
    """The body of a document write (inside ``BEGIN IMMEDIATE``)."""
    document_id, max_id, existing = await _upsert(conn, write, metadata_json=metadata_json, now=now)
    plan = plan_write(existing, write.drafts, write.vectors)
    await _apply(conn, plan, document_id=document_id, first_id=max_id + 1, now=now)
    return WriteOutcome(
        document_id=document_id,
        stored=len(plan.new),
        unchanged=len(plan.kept),
        removed=len(plan.delete_ids),
        pending=plan.pending,
    )


async def _apply(
    conn: aiosqlite.Connection, plan: WritePlan, *, document_id: int, first_id: int, now: str
) -> None:
    if plan.delete_ids:
        # The chunks_vec_delete trigger deletes their vectors.
        await conn.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in plan.delete_ids])
    updates = plan.updates
    if updates:
        await conn.executemany(
            _UPDATE_CHUNK,
            [(c.draft.position, c.draft.text, c.meta_json, now, c.chunk_id) for c in updates],
        )
        await index_chunks(conn, [(c.chunk_id, c.draft.index_terms()) for c in updates])
    if not plan.new:
        return
    # Ids are given explicitly (we hold the write lock) so vectors can follow at once.
    ids = range(first_id, first_id + len(plan.new))
    await conn.executemany(
        _INSERT_CHUNK,
        [
            (
                i,
                document_id,
                c.draft.position,
                c.draft.text,
                c.meta_json,
                c.draft.content_hash,
                c.status,
                now,
                now,
            )
            for i, c in zip(ids, plan.new, strict=True)
        ],
    )
    await index_chunks(
        conn,
        [(i, c.draft.index_terms()) for i, c in zip(ids, plan.new, strict=True)],
        new=True,
    )
    vectors = [(i, c.vector) for i, c in zip(ids, plan.new, strict=True) if c.vector is not None]
    if vectors:
        await conn.executemany("INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)", vectors)
    copies = [
        (i, c.copy_vector_of)
        for i, c in zip(ids, plan.new, strict=True)
        if c.copy_vector_of is not None
    ]
    if copies:
        await conn.executemany(
            "INSERT INTO vec_chunks (rowid, embedding) "
            "SELECT ?, embedding FROM vec_chunks WHERE rowid = ?",
            copies,
        )


async def delete(conn: aiosqlite.Connection, source: str) -> bool:
    """Delete a document; chunks follow by cascade, vectors and keyword rows by trigger."""
    cursor = await conn.execute("DELETE FROM documents WHERE source = ?", (source,))
    return bool(cursor.rowcount and cursor.rowcount > 0)
