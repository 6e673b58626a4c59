"""Document and chunk rows: the snapshot read and the write transaction, in SQL.

As in every engine, the store reads the document's stored chunks, asks
:func:`~asemantic.adapters.planning.plan_write` what to do (the rules of
:class:`asemantic.ports.DocumentWrite`: content-hash reuse, deletions, vector copies),
and does it in the same transaction.

Decisions:

* **The document row is the lock**: the upsert (``INSERT ... ON CONFLICT DO UPDATE``)
  locks it, so two processes writing the same source at once run one after the other,
  and the second plans against the first one's chunks. Writes of different documents
  never wait for each other.
* **One round trip per kind of change**: a document the upsert inserted (``xmax = 0``)
  has no chunks to read; deletions by ``id = ANY($1)``, new chunks and
  their vectors from ``unnest`` of arrays (ids drawn from the identity sequence first,
  so vectors can follow at once), updates of kept chunks likewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from asemantic.adapters.planning import ExistingChunk, WritePlan, plan_write
from asemantic.adapters.postgres.keywords import index_chunks
from asemantic.domain.documents import EmbeddingStatus
from asemantic.ports import DocumentSnapshot, DocumentWrite, StoredChunk, WriteOutcome

__all__ = ["SELECT_SNAPSHOT", "delete", "snapshot_from_rows", "write"]

SELECT_SNAPSHOT = (
    "SELECT d.id, d.source, d.content_hash, c.id, c.position, c.content_hash, "
    "c.embedding_status FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
    "WHERE d.source = $1 ORDER BY c.position, c.id"
)
_UPSERT_DOCUMENT = (
    "INSERT INTO documents (source, title, content_hash, metadata_json) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO UPDATE SET "
    "title = excluded.title, content_hash = excluded.content_hash, "
    "metadata_json = excluded.metadata_json, updated_at = now() RETURNING id, xmax = 0"
)
_SELECT_EXISTING = (
    "SELECT id, position, content_hash, embedding_status, text, meta_json FROM chunks "
    "WHERE document_id = $1 ORDER BY id FOR UPDATE"
)
_NEW_IDS = "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, $1)"
_INSERT_CHUNKS = (
    "INSERT INTO chunks (id, document_id, position, text, meta_json, content_hash, "
    "embedding_status) SELECT i, $2, p, t, m, h, s FROM unnest($1::bigint[], "
    "$3::integer[], $4::text[], $5::text[], $6::text[], $7::text[]) AS n(i, p, t, m, h, s)"
)
_UPDATE_CHUNKS = (
    "UPDATE chunks c SET position = n.p, text = n.t, meta_json = n.m, updated_at = now() "
    "FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::text[]) AS n(i, p, t, m) "
    "WHERE c.id = n.i"
)
_INSERT_VECTORS = (
    "INSERT INTO chunk_vectors (chunk_id, embedding) "
    "SELECT * FROM unnest($1::bigint[], $2::vector[])"
)
_COPY_VECTORS = (
    "INSERT INTO chunk_vectors (chunk_id, embedding) SELECT n.i, v.embedding "
    "FROM unnest($1::bigint[], $2::bigint[]) AS n(i, source) "
    "JOIN chunk_vectors v ON v.chunk_id = n.source"
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


async def write(
    conn: asyncpg.Connection, write: DocumentWrite, *, metadata_json: str
) -> WriteOutcome:
    """The body of a document write (inside the caller's transaction)."""
    document = write.document
    document_id, inserted = await conn.fetchrow(
        _UPSERT_DOCUMENT, document.source, document.title, write.content_hash, metadata_json
    )
    document_id = int(document_id)
    existing = (
        []
        if inserted
        else [
            ExistingChunk(
                chunk_id=int(row[0]),
                position=int(row[1]),
                content_hash=str(row[2]),
                status=str(row[3]),
                text=str(row[4]),
                meta_json=str(row[5]),
            )
            for row in await conn.fetch(_SELECT_EXISTING, document_id)
        ]
    )
    plan = plan_write(existing, write.drafts, write.vectors)
    await _apply(conn, plan, document_id=document_id)
    return WriteOutcome(
        document_id=document_id,
        stored=len(plan.new),
        unchanged=len(plan.kept),
        removed=len(plan.delete_ids),
        pending=plan.pending,
    )


async def _apply(conn: asyncpg.Connection, plan: WritePlan, *, document_id: int) -> None:
    if plan.delete_ids:
        # chunk_vectors rows go by ON DELETE CASCADE.
        await conn.execute("DELETE FROM chunks WHERE id = ANY($1::bigint[])", list(plan.delete_ids))
    updates = plan.updates
    if updates:
        await conn.execute(
            _UPDATE_CHUNKS,
            [c.chunk_id for c in updates],
            [c.draft.position for c in updates],
            [c.draft.text for c in updates],
            [c.meta_json for c in updates],
        )
        await index_chunks(conn, [(c.chunk_id, c.draft.index_terms()) for c in updates])
    if not plan.new:
        return
    ids = [int(row[0]) for row in await conn.fetch(_NEW_IDS, len(plan.new))]
    new = plan.new
    await conn.execute(
        _INSERT_CHUNKS,
        ids,
        document_id,
        [c.draft.position for c in new],
        [c.draft.text for c in new],
        [c.meta_json for c in new],
        [c.draft.content_hash for c in new],
        [c.status for c in new],
    )
    await index_chunks(conn, [(i, c.draft.index_terms()) for i, c in zip(ids, new, strict=True)])
    vectors = [(i, c.vector) for i, c in zip(ids, new, strict=True) if c.vector is not None]
    if vectors:
        await conn.execute(
            _INSERT_VECTORS, [i for i, _ in vectors], [bytes(blob) for _, blob in vectors]
        )
    copies = [
        (i, c.copy_vector_of) for i, c in zip(ids, new, strict=True) if c.copy_vector_of is not None
    ]
    if copies:
        await conn.execute(_COPY_VECTORS, [i for i, _ in copies], [s for _, s in copies])


async def delete(conn: asyncpg.Connection, source: str) -> bool:
    """Delete a document; its chunks, their vectors and keyword rows follow by cascade."""
    status = await conn.execute("DELETE FROM documents WHERE source = $1", source)
    return str(status) != "DELETE 0"
