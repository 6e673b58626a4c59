"""MemoryTransfer: an in-memory knowledge base's rows in and out, keys kept.

The :class:`~asemantic.ports.KnowledgeBaseTransfer` of a :class:`MemoryStore` (get it as
``store.transfer``); :mod:`asemantic.copy` drives it.

Decisions:

* An import page is one all-or-nothing write (:meth:`Database.write`), as a SQLite
  transaction: a failed page leaves nothing behind.
* A chunk's derived fields (vector source, heading path, token estimate) are read back
  from its ``meta_json``, as the SQLite store reads them.
* What this engine does not track by itself comes from what a copy brought in, or
  from the nearest stamp it has: a chunk's created/updated stamps are its document's
  unless a copy gave them; a cleaned job's ``cleaned_at`` is its ``updated_at``
  unless a copy gave it.
* The id counters move past every imported id, so later writes never reuse one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from asemantic.adapters.memory.database import ChunkRow, Database, DocumentRow, Journal, Tables
from asemantic.adapters.memory.search import VectorIndex
from asemantic.adapters.vectors import check_blobs
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import EmbeddingSpaceMismatchError, InvalidInputError
from asemantic.ports import (
    TransferChunk,
    TransferDocument,
    TransferInventory,
    TransferJob,
    TransferKey,
    TransferRow,
    TransferTable,
    TransferTransition,
    TransferUsage,
)

if TYPE_CHECKING:
    from asemantic.adapters.memory.store import MemoryStore

__all__ = ["MemoryTransfer"]


class MemoryTransfer:
    """Rows of one in-memory knowledge base, exported and imported by key."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._db: Database = store._db

    def __repr__(self) -> str:
        return f"MemoryTransfer({self._store!r})"

    async def inventory(self) -> TransferInventory:
        def work(tables: Tables) -> TransferInventory:
            return TransferInventory(
                database_id=self._db.database_id,
                space=self._db.space,
                rows={table: len(_table(tables, table)) for table in TransferTable},
            )

        return await self._db.read(work)

    async def adopt_identity(self, *, database_id: str, space: EmbeddingSpace | None) -> None:
        def work(tables: Tables, journal: Journal) -> None:
            recorded = self._db.space
            if space is not None and recorded is not None and recorded != space:
                raise EmbeddingSpaceMismatchError(
                    f"this store holds vectors of {recorded.describe()}, not {space.describe()}"
                )
            self._db.database_id = database_id
            if space is not None and recorded is None:
                self._db.space = space
                self._store._index = VectorIndex(space.dimensions)

        await self._db.write(work)

    async def last_key(self, table: TransferTable) -> TransferKey | None:
        def work(tables: Tables) -> TransferKey | None:
            keys: list[Any] = list(_table(tables, table))
            return max(keys) if keys else None

        return await self._db.read(work)

    async def export_rows(
        self, table: TransferTable, *, after: TransferKey | None, limit: int
    ) -> list[TransferRow]:
        if limit < 1:
            raise InvalidInputError("limit must be at least 1")

        def work(tables: Tables) -> list[TransferRow]:
            keys: list[Any] = sorted(_table(tables, table))
            if after is not None:
                keys = [key for key in keys if key > after]
            export = _EXPORTERS[table]
            return [export(tables, key) for key in keys[:limit]]

        return await self._db.read(work)

    async def complete_import(self) -> None:
        """Nothing to rebuild: every index is kept current while importing."""

    async def import_rows(self, table: TransferTable, rows: Sequence[TransferRow]) -> int:
        vectors = [
            (row.chunk_id, row.vector)
            for row in rows
            if isinstance(row, TransferChunk) and row.vector is not None
        ]
        if vectors:
            check_blobs(vectors, self._db.space)

        def work(tables: Tables, journal: Journal) -> int:
            for row in rows:
                _import(tables, journal, table, row)
            return len(rows)

        return await self._db.write(work)


def _table(tables: Tables, table: TransferTable) -> dict[Any, Any]:
    if table is TransferTable.DOCUMENTS:
        return tables.documents
    if table is TransferTable.JOBS:
        return tables.jobs
    if table is TransferTable.CHUNKS:
        return tables.chunks
    if table is TransferTable.TRANSITIONS:
        return tables.transitions
    return tables.ledger


def _export_document(tables: Tables, key: int) -> TransferRow:
    row = tables.documents[key]
    return TransferDocument(
        document_id=row.document_id,
        source=row.source,
        title=row.title,
        content_hash=row.content_hash,
        metadata_json=row.metadata_json,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _export_job(tables: Tables, key: str) -> TransferRow:
    job = tables.jobs[key]
    cleaned_at = tables.cleaned_at.get(key, job.updated_at) if job.cleaned else None
    return TransferJob(job=job, cleaned_at=cleaned_at)


def _export_chunk(tables: Tables, key: int) -> TransferRow:
    chunk = tables.chunks[key]
    document = tables.documents.get(chunk.document_id)
    fallback = (document.created_at, document.updated_at) if document else (None, None)
    created_at, updated_at = tables.chunk_stamps.get(key, fallback)
    return TransferChunk(
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        position=chunk.position,
        text=chunk.text,
        meta_json=chunk.meta_json,
        content_hash=chunk.content_hash,
        status=chunk.status,
        job_id=chunk.job_id,
        error_message=chunk.error_message,
        attempts=chunk.attempts,
        created_at=created_at,
        updated_at=updated_at,
        vector=tables.vectors.get(key),
    )


_EXPORTERS: dict[TransferTable, Callable[[Tables, Any], TransferRow]] = {
    TransferTable.DOCUMENTS: _export_document,
    TransferTable.JOBS: _export_job,
    TransferTable.CHUNKS: _export_chunk,
    TransferTable.TRANSITIONS: lambda tables, key: tables.transitions[key],
    TransferTable.USAGE: lambda tables, key: tables.ledger[key],
}


def _advance(tables: Tables, journal: Journal, counter: str, key: int) -> None:
    if tables.counters.get(counter, 0) < key:
        journal.put(tables.counters, counter, key)


def _import(tables: Tables, journal: Journal, table: TransferTable, row: TransferRow) -> None:
    if isinstance(row, TransferDocument) and table is TransferTable.DOCUMENTS:
        _import_document(tables, journal, row)
    elif isinstance(row, TransferJob) and table is TransferTable.JOBS:
        _import_job(tables, journal, row)
    elif isinstance(row, TransferChunk) and table is TransferTable.CHUNKS:
        _import_chunk(tables, journal, row)
    elif isinstance(row, TransferTransition) and table is TransferTable.TRANSITIONS:
        journal.put(tables.transitions, row.transition_id, row)
        _advance(tables, journal, "transition", row.transition_id)
    elif isinstance(row, TransferUsage) and table is TransferTable.USAGE:
        old = tables.ledger.get(row.entry_id)
        if old is not None:
            journal.put(tables.usage, old.route, tables.usage.get(old.route, 0) - old.tokens)
            texts = tables.usage_texts.get(old.route, 0) - old.texts
            journal.put(tables.usage_texts, old.route, texts)
        journal.put(tables.usage, row.route, tables.usage.get(row.route, 0) + row.tokens)
        journal.put(tables.usage_texts, row.route, tables.usage_texts.get(row.route, 0) + row.texts)
        journal.put(tables.ledger, row.entry_id, row)
        _advance(tables, journal, "usage", row.entry_id)
    else:
        raise InvalidInputError(f"a {type(row).__name__} is not a row of {table.value}")


def _import_document(tables: Tables, journal: Journal, row: TransferDocument) -> None:
    old = tables.documents.get(row.document_id)
    if old is not None and old.source != row.source:
        journal.drop(tables.sources, old.source)
    journal.put(tables.sources, row.source, row.document_id)
    stamp = row.created_at or row.updated_at
    if stamp is None:
        raise InvalidInputError("a document row needs a created_at or updated_at stamp")
    journal.put(
        tables.documents,
        row.document_id,
        DocumentRow(
            document_id=row.document_id,
            source=row.source,
            title=row.title,
            content_hash=row.content_hash,
            metadata_json=row.metadata_json,
            created_at=row.created_at or stamp,
            updated_at=row.updated_at or stamp,
        ),
    )
    _advance(tables, journal, "document", row.document_id)


def _import_job(tables: Tables, journal: Journal, row: TransferJob) -> None:
    job = replace(row.job, cleaned=row.cleaned_at is not None)
    journal.put(tables.jobs, job.job_id, job)
    if job.remote_name is not None:
        journal.put(tables.remote_names, job.remote_name, job.job_id)
    if row.cleaned_at is not None:
        journal.put(tables.cleaned_at, job.job_id, row.cleaned_at)
    else:
        journal.drop(tables.cleaned_at, job.job_id)


def _import_chunk(tables: Tables, journal: Journal, row: TransferChunk) -> None:
    meta = _meta(row.meta_json)
    source = meta.get("_vector_source")
    heading = meta.get("heading_path")
    old = tables.chunks.get(row.chunk_id)
    if old is not None and old.document_id != row.document_id:
        journal.drop_chunk(row.chunk_id)
    journal.put_chunk(
        ChunkRow(
            chunk_id=row.chunk_id,
            document_id=row.document_id,
            position=row.position,
            text=row.text,
            meta_json=row.meta_json,
            vector_source=source if isinstance(source, str) else row.text,
            heading_path=tuple(str(h) for h in heading) if isinstance(heading, list) else (),
            content_hash=row.content_hash,
            token_estimate=int(meta.get("token_estimate") or 0),
            status=row.status,
            job_id=row.job_id,
            error_message=row.error_message,
            attempts=row.attempts,
        )
    )
    if row.vector is not None:
        journal.put(tables.vectors, row.chunk_id, bytes(row.vector))
    else:
        journal.drop(tables.vectors, row.chunk_id)
    journal.put(tables.chunk_stamps, row.chunk_id, (row.created_at, row.updated_at))
    _advance(tables, journal, "chunk", row.chunk_id)


def _meta(meta_json: str) -> dict[str, Any]:
    try:
        meta = json.loads(meta_json or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}
