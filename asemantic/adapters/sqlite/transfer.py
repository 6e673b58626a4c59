"""SqliteTransfer: a SQLite knowledge base's rows in and out, keys kept.

The :class:`~asemantic.ports.KnowledgeBaseTransfer` of a :class:`SqliteStore` (get it
as ``store.transfer``); :mod:`asemantic.copy` drives it.

Decisions:

* Every export page is one statement on the reader (one committed snapshot); a chunk
  page carries its vectors through a ``LEFT JOIN`` on ``vec_chunks`` by rowid.
* Every import page is one ``BEGIN IMMEDIATE`` transaction of upserts by primary key
  (``ON CONFLICT (id) DO UPDATE``, never ``INSERT OR REPLACE``, which would delete and
  cascade). A page's vectors replace the chunks' vectors by DELETE + INSERT (vec0 has
  no upsert); the triggers of :mod:`.vectors` keep ``vector_log`` in step, so the
  in-memory search index sees imported vectors.
* Timestamps are written as ISO 8601 with microseconds; a missing one becomes the
  column's ``''`` default (nullable columns get NULL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from asemantic.adapters.planning import load_stats
from asemantic.adapters.sqlite.jobs import _JOB_COLUMNS, _record
from asemantic.adapters.sqlite.keywords import index_chunks
from asemantic.adapters.sqlite.spaces import record_home_space
from asemantic.adapters.sqlite.vectors import (
    VEC_TABLE,
    create_vec_table,
    read_space,
    record_space,
    vec_table_ddl,
)
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.keywords import index_terms
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
    from asemantic.adapters.sqlite.store import SqliteStore

__all__ = ["SqliteTransfer"]

_INVENTORY = (
    "SELECT (SELECT value FROM store_meta WHERE key = 'database_id'), "
    "(SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM batch_jobs), "
    "(SELECT COUNT(*) FROM chunks), (SELECT COUNT(*) FROM batch_job_transitions), "
    "(SELECT COUNT(*) FROM usage_ledger)"
)
_PAGE = " WHERE (? IS NULL OR {key} > ?) ORDER BY {key} LIMIT ?"
_EXPORT = {
    TransferTable.DOCUMENTS: "SELECT id, source, title, content_hash, metadata_json, "
    "created_at, updated_at FROM documents",
    TransferTable.JOBS: f"SELECT {_JOB_COLUMNS} FROM batch_jobs",
    TransferTable.TRANSITIONS: "SELECT id, job_id, from_status, to_status, at, stats "
    "FROM batch_job_transitions",
    TransferTable.USAGE: "SELECT id, at, route, texts, tokens FROM usage_ledger",
}
_CHUNK_COLUMNS = (
    "c.id, c.document_id, c.position, c.text, c.meta_json, c.content_hash, "
    "c.embedding_status, c.batch_job_id, c.error_message, c.attempts, c.created_at, "
    "c.updated_at"
)
_IMPORT = {
    TransferTable.DOCUMENTS: (
        "id, source, title, content_hash, metadata_json, created_at, updated_at"
    ),
    TransferTable.JOBS: (
        "id, display_name, status, google_job_id, input_file, output_file, stats, "
        "error_message, created_at, updated_at, cleaned_at, create_attempted_at"
    ),
    TransferTable.CHUNKS: (
        "id, document_id, position, text, meta_json, content_hash, embedding_status, "
        "batch_job_id, error_message, attempts, created_at, updated_at"
    ),
    TransferTable.TRANSITIONS: "id, job_id, from_status, to_status, at, stats",
    TransferTable.USAGE: "id, at, route, texts, tokens",
}


def _upsert_sql(table: TransferTable) -> str:
    columns = [name.strip() for name in _IMPORT[table].split(",")]
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns[1:])
    return (
        f"INSERT INTO {table.value} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def _stamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _text(value: datetime | None) -> str:
    return value.isoformat(timespec="microseconds") if value is not None else ""


def _nullable(value: datetime | None) -> str | None:
    return value.isoformat(timespec="microseconds") if value is not None else None


class SqliteTransfer:
    """Rows of one SQLite knowledge base, exported and imported by key."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"SqliteTransfer({self._store!r})"

    async def inventory(self) -> TransferInventory:
        rows = await self._store.fetchall(_INVENTORY)
        database_id, *counts = rows[0]
        return TransferInventory(
            database_id=str(database_id) if database_id is not None else None,
            space=self._store.home_space,  # space 1's: the vectors this copies
            rows={table: int(n) for table, n in zip(TransferTable, counts, strict=True)},
        )

    async def adopt_identity(self, *, database_id: str, space: EmbeddingSpace | None) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('database_id', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (database_id,),
            )
            if space is not None:
                await _adopt_space(conn, space)
        if space is not None:
            self._store.adopt_home_space(space)  # the store's cached space follows the file

    async def last_key(self, table: TransferTable) -> TransferKey | None:
        rows = await self._store.fetchall(f"SELECT MAX(id) FROM {table.value}")
        value = rows[0][0]
        if value is None:
            return None
        return str(value) if table is TransferTable.JOBS else int(value)

    async def export_rows(
        self, table: TransferTable, *, after: TransferKey | None, limit: int
    ) -> list[TransferRow]:
        if limit < 1:
            raise InvalidInputError("limit must be at least 1")
        if table is TransferTable.CHUNKS:
            return await self._export_chunks(after, limit)
        sql = _EXPORT[table] + _PAGE.format(key="id")
        rows = await self._store.fetchall(sql, (after, after, limit))
        return [_parse(table, row) for row in rows]

    async def _export_chunks(self, after: TransferKey | None, limit: int) -> list[TransferRow]:
        if self._store.home_space is None:
            sql = f"SELECT {_CHUNK_COLUMNS}, NULL FROM chunks c"
        else:
            sql = (
                f"SELECT {_CHUNK_COLUMNS}, v.embedding FROM chunks c "
                f"LEFT JOIN {VEC_TABLE} v ON v.rowid = c.id"
            )
        rows = await self._store.fetchall(sql + _PAGE.format(key="c.id"), (after, after, limit))
        return [_chunk(row) for row in rows]

    async def complete_import(self) -> None:
        """Nothing to rebuild: every index is kept current while importing."""

    async def import_rows(self, table: TransferTable, rows: Sequence[TransferRow]) -> int:
        if not rows:
            return 0
        params = [_params(table, row) for row in rows]
        chunks = [row for row in rows if isinstance(row, TransferChunk)]
        async with self._store.transaction() as conn:
            await conn.executemany(_upsert_sql(table), params)
            if chunks:
                await self._import_vectors(conn, chunks)
                await index_chunks(conn, [(c.chunk_id, index_terms(c.text)) for c in chunks])
        return len(rows)

    async def _import_vectors(
        self, conn: aiosqlite.Connection, chunks: Sequence[TransferChunk]
    ) -> None:
        vectors = [(c.chunk_id, bytes(c.vector)) for c in chunks if c.vector is not None]
        if await vec_table_ddl(conn) is None:
            if vectors:
                raise EmbeddingSpaceMismatchError(
                    "vectors were given to a database with no embedding space"
                )
            return
        await conn.executemany(
            f"DELETE FROM {VEC_TABLE} WHERE rowid = ?", [(c.chunk_id,) for c in chunks]
        )
        if vectors:
            await conn.executemany(
                f"INSERT INTO {VEC_TABLE} (rowid, embedding) VALUES (?, ?)", vectors
            )


async def _adopt_space(conn: aiosqlite.Connection, space: EmbeddingSpace) -> None:
    recorded = await read_space(conn)
    if recorded is None:
        await record_space(conn, space)
        await create_vec_table(conn, space.dimensions)
        await record_home_space(conn, space)  # space 1, active (schema version 2)
    elif recorded != space:
        raise EmbeddingSpaceMismatchError(
            f"this database holds vectors of {recorded.describe()}, not {space.describe()}"
        )


def _parse(table: TransferTable, row: Sequence[Any]) -> TransferRow:
    if table is TransferTable.DOCUMENTS:
        return TransferDocument(
            document_id=int(row[0]),
            source=str(row[1]),
            title=row[2],
            content_hash=str(row[3]),
            metadata_json=str(row[4]),
            created_at=_stamp(row[5]),
            updated_at=_stamp(row[6]),
        )
    if table is TransferTable.JOBS:
        return TransferJob(job=_record(row), cleaned_at=_stamp(row[10]))
    if table is TransferTable.TRANSITIONS:
        return TransferTransition(
            transition_id=int(row[0]),
            job_id=str(row[1]),
            from_status=row[2],
            to_status=str(row[3]),
            at=_stamp(row[4]),
            stats=load_stats(row[5]),
        )
    return TransferUsage(
        entry_id=int(row[0]),
        at=_stamp(row[1]),
        route=str(row[2]),
        texts=int(row[3]),
        tokens=int(row[4]),
    )


def _chunk(row: Sequence[Any]) -> TransferChunk:
    return TransferChunk(
        chunk_id=int(row[0]),
        document_id=int(row[1]),
        position=int(row[2]),
        text=str(row[3]),
        meta_json=str(row[4]),
        content_hash=str(row[5]),
        status=EmbeddingStatus(row[6]),
        job_id=row[7],
        error_message=row[8],
        attempts=int(row[9]),
        created_at=_stamp(row[10]),
        updated_at=_stamp(row[11]),
        vector=bytes(row[12]) if row[12] is not None else None,
    )


def _params(table: TransferTable, row: TransferRow) -> tuple[Any, ...]:
    """The upsert parameters of one row, in :data:`_IMPORT` column order."""
    if isinstance(row, TransferDocument) and table is TransferTable.DOCUMENTS:
        return (
            row.document_id,
            row.source,
            row.title,
            row.content_hash,
            row.metadata_json,
            _text(row.created_at),
            _text(row.updated_at),
        )
    if isinstance(row, TransferJob) and table is TransferTable.JOBS:
        job = row.job
        return (
            job.job_id,
            job.display_name,
            job.status.value,
            job.remote_name,
            job.input_file,
            job.output_file,
            json.dumps(dict(job.stats), sort_keys=True),
            job.error_message,
            _text(job.created_at),
            _text(job.updated_at),
            _nullable(row.cleaned_at),
            _nullable(job.create_attempted_at),
        )
    if isinstance(row, TransferChunk) and table is TransferTable.CHUNKS:
        return (
            row.chunk_id,
            row.document_id,
            row.position,
            row.text,
            row.meta_json,
            row.content_hash,
            row.status.value,
            row.job_id,
            row.error_message,
            row.attempts,
            _text(row.created_at),
            _text(row.updated_at),
        )
    if isinstance(row, TransferTransition) and table is TransferTable.TRANSITIONS:
        return (
            row.transition_id,
            row.job_id,
            row.from_status,
            row.to_status,
            _text(row.at),
            json.dumps(dict(row.stats), sort_keys=True),
        )
    if isinstance(row, TransferUsage) and table is TransferTable.USAGE:
        return (row.entry_id, _text(row.at), row.route, row.texts, row.tokens)
    raise InvalidInputError(f"a {type(row).__name__} is not a row of {table.value}")
