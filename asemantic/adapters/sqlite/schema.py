"""The database schema, its versions and the upgrade between them.

The version lives in ``PRAGMA user_version``.

Version 0, the schema of the design asemantic started from (never written by
asemantic itself, but databases built to it are upgraded)::

    documents(id INTEGER PRIMARY KEY, source TEXT UNIQUE NOT NULL, title TEXT,
              content_hash TEXT NOT NULL, metadata_json TEXT NOT NULL DEFAULT '{}',
              created_at TEXT NOT NULL)
    chunks(id INTEGER PRIMARY KEY,
           document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
           position INTEGER NOT NULL, text TEXT NOT NULL,
           meta_json TEXT NOT NULL DEFAULT '{}')
    vec_chunks USING vec0(embedding float[768])          -- L2 distance, no space recorded

Every chunk had a vector; there was no batch pipeline.

Version 1:

* ``documents`` gains ``updated_at``.
* ``chunks`` gains ``content_hash`` (SHA-256 hex of the vector source, the text sent for
  embedding: ``meta_json._vector_source``, or the chunk text when that is absent),
  ``embedding_status`` (READY/PENDING/FAILED), ``batch_job_id``, ``error_message``,
  ``attempts``, ``created_at`` and ``updated_at``; indexes on ``(document_id, position)``,
  ``(embedding_status, batch_job_id)``, ``(batch_job_id)`` and the READY chunks'
  ``(document_id)``.
* New tables: ``batch_jobs`` (with ``create_attempted_at``: when a remote create whose
  outcome is not known yet was last sent; ``cleaned_at``: when its remote files and job were
  deleted), ``batch_job_transitions``, ``supervisor_lease``, ``embedding_space`` and
  ``store_meta`` (key/value; ``database_id`` names this file's remote objects) and
  ``usage_ledger`` (tokens embedded per route, for cost accounting).
* ``vec_chunks`` uses ``distance_metric=cosine`` with a ``chunk_size`` fitted to its
  dimensions (see :mod:`.vectors`), and triggers delete vectors with their chunks.

Version 2 (current) adds

* the keyword index (:mod:`.keywords`): the FTS5 table ``chunk_keywords`` (rowid = chunk
  id, the chunk's normalised tokens) and the trigger ``chunks_keywords_delete``; the
  upgrade indexes every chunk already there;
* for several embedding spaces (:mod:`asemantic.domain.spaces`), the tables
  ``embedding_spaces`` (the file's recorded space becomes space 1, active),
  ``space_chunks``, ``space_batch_jobs`` and ``space_batch_job_transitions``
  (:mod:`.spaces`); per-space vec0 tables are created when a space is registered.
  Nothing existing moves: a version-1 file keeps its chunks, vectors and jobs where
  they are.

Upgrading (0 or 1) -> 2 happens in ONE transaction (an interruption leaves the file at
the version it had, intact): missing columns are added with ``ALTER TABLE``, missing tables and
indexes created, content hashes filled. A version-0 ``vec_chunks`` records no space, so
the upgrade assumes the original design's ``gemini-embedding-001`` with
``RETRIEVAL_DOCUMENT`` and the dimension declared in the table (768 there); it rebuilds
the table with the cosine metric, copying every vector. Chunks with a vector are READY
and searchable afterwards; a chunk without one becomes PENDING (the batch pipeline will
embed it) and a vector without a chunk is dropped. Timestamp columns added by the
upgrade are filled from the document's ``created_at``.

Columns added by ``ALTER TABLE`` cannot have non-constant defaults, so timestamp columns
are ``TEXT NOT NULL DEFAULT ''`` in fresh databases too: fresh and upgraded files have
the same columns and constraints (column order aside). ``(document_id, position)`` is a
plain index, not a unique one, so an upgrade never fails on old data; the store keeps
positions unique.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosqlite

from asemantic.adapters.sqlite.connection import Driver, enable_wal, rollback
from asemantic.adapters.sqlite.keyword_index import ensure_keyword_log
from asemantic.adapters.sqlite.keywords import ensure_keyword_index
from asemantic.adapters.sqlite.spaces import read_active_space, record_home_space, upgrade_spaces
from asemantic.adapters.sqlite.vectors import (
    VEC_TABLE,
    check_same_space,
    create_vec_table,
    create_vec_triggers,
    dimensions_of,
    ensure_space,
    ensure_vector_log,
    knn_prefilter_works,
    read_space,
    vec_table_ddl,
)
from asemantic.domain.space import DEFAULT_MODEL, EmbeddingSpace
from asemantic.errors import SchemaVersionError, StoreError

__all__ = [
    "CURRENT_VERSION",
    "V0_ASSUMED_TASK_TYPE",
    "check_schema_version",
    "ensure_schema_compatibility",
    "prepare_database",
    "read_version",
]

logger = logging.getLogger(__name__)

CURRENT_VERSION = 2
V0_ASSUMED_TASK_TYPE = "RETRIEVAL_DOCUMENT"
_V0_DEFAULT_DIMENSIONS = 768
_HASH_BATCH = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class _Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    """(name, definition); the first ones may be required (cannot be added)."""
    required: tuple[str, ...] = ("id",)
    constraints: tuple[str, ...] = ()

    def create_sql(self) -> str:
        parts = [f"{name} {definition}" for name, definition in self.columns]
        parts.extend(self.constraints)
        return f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(parts) + "\n)"


_STAMP = "TEXT NOT NULL DEFAULT ''"

TABLES: tuple[_Table, ...] = (
    _Table(
        name="documents",
        columns=(
            ("id", "INTEGER PRIMARY KEY"),
            ("source", "TEXT NOT NULL UNIQUE"),
            ("title", "TEXT"),
            ("content_hash", "TEXT NOT NULL"),
            ("metadata_json", "TEXT NOT NULL DEFAULT '{}'"),
            ("created_at", "TEXT NOT NULL"),
            ("updated_at", _STAMP),
        ),
        required=("id", "source", "content_hash", "created_at"),
    ),
    _Table(
        name="batch_jobs",
        columns=(
            ("id", "TEXT PRIMARY KEY"),
            ("google_job_id", "TEXT UNIQUE"),
            ("display_name", "TEXT NOT NULL UNIQUE"),
            (
                "status",
                "TEXT NOT NULL DEFAULT 'CREATED' CHECK (status IN "
                "('CREATED', 'SUBMITTED', 'PROCESSING', 'COMPLETED', 'FAILED'))",
            ),
            ("input_file", "TEXT"),
            ("output_file", "TEXT"),
            ("stats", "TEXT NOT NULL DEFAULT '{}'"),
            ("error_message", "TEXT"),
            ("created_at", _STAMP),
            ("updated_at", _STAMP),
            ("cleaned_at", "TEXT"),
            ("create_attempted_at", "TEXT"),
        ),
        required=("id", "google_job_id", "display_name"),
    ),
    _Table(
        name="batch_job_transitions",
        columns=(
            ("id", "INTEGER PRIMARY KEY"),
            ("job_id", "TEXT NOT NULL REFERENCES batch_jobs(id) ON DELETE CASCADE"),
            ("from_status", "TEXT"),
            ("to_status", "TEXT NOT NULL DEFAULT ''"),
            ("at", _STAMP),
            ("stats", "TEXT NOT NULL DEFAULT '{}'"),
        ),
        required=("id", "job_id"),
    ),
    _Table(
        name="usage_ledger",
        columns=(
            ("id", "INTEGER PRIMARY KEY"),
            ("at", _STAMP),
            ("route", "TEXT NOT NULL CHECK (route IN ('online', 'batch', 'query'))"),
            ("texts", "INTEGER NOT NULL DEFAULT 0"),
            ("tokens", "INTEGER NOT NULL DEFAULT 0"),
        ),
    ),
    _Table(
        name="store_meta",
        columns=(
            ("key", "TEXT PRIMARY KEY"),
            ("value", "TEXT NOT NULL"),
        ),
        required=("key", "value"),
    ),
    _Table(
        name="supervisor_lease",
        columns=(
            ("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            ("owner", "TEXT"),
            ("expires_at", "REAL"),
        ),
    ),
    _Table(
        name="embedding_space",
        columns=(
            ("id", "INTEGER PRIMARY KEY CHECK (id = 1)"),
            ("model", "TEXT NOT NULL"),
            ("dimensions", "INTEGER NOT NULL"),
            ("task_type", "TEXT NOT NULL"),
        ),
        required=("id", "model", "dimensions", "task_type"),
    ),
    _Table(
        name="chunks",
        columns=(
            ("id", "INTEGER PRIMARY KEY"),
            ("document_id", "INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE"),
            ("position", "INTEGER NOT NULL"),
            ("text", "TEXT NOT NULL"),
            ("meta_json", "TEXT NOT NULL DEFAULT '{}'"),
            ("content_hash", "TEXT NOT NULL DEFAULT ''"),
            (
                "embedding_status",
                "TEXT NOT NULL DEFAULT 'READY' "
                "CHECK (embedding_status IN ('READY', 'PENDING', 'FAILED'))",
            ),
            ("batch_job_id", "TEXT REFERENCES batch_jobs(id) ON DELETE SET NULL"),
            ("error_message", "TEXT"),
            ("attempts", "INTEGER NOT NULL DEFAULT 0"),
            ("created_at", _STAMP),
            ("updated_at", _STAMP),
        ),
        required=("id", "document_id", "position", "text"),
    ),
)

INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS chunks_document_position ON chunks (document_id, position)",
    "CREATE INDEX IF NOT EXISTS chunks_status_job ON chunks (embedding_status, batch_job_id)",
    # Filtered searches find the READY chunks of the matching documents here without
    # reading the (wide) chunk rows: 10x faster on 20,000 chunks of ~2.3 KB.
    "CREATE INDEX IF NOT EXISTS chunks_ready_document ON chunks (document_id) "
    "WHERE embedding_status = 'READY'",
    "CREATE INDEX IF NOT EXISTS chunks_job ON chunks (batch_job_id) WHERE batch_job_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS batch_jobs_status ON batch_jobs (status)",
    "CREATE INDEX IF NOT EXISTS batch_job_transitions_job ON batch_job_transitions (job_id, id)",
)


async def read_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def _refuse_newer(version: int) -> None:
    if version > CURRENT_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {version}, newer than this asemantic "
            f"understands ({CURRENT_VERSION}); upgrade asemantic to open it"
        )


async def check_schema_version(conn: aiosqlite.Connection) -> int:
    """The file's schema version; :class:`SchemaVersionError` (touching nothing) if it
    is newer than :data:`CURRENT_VERSION`."""
    version = await read_version(conn)
    _refuse_newer(version)
    return version


async def ensure_schema_compatibility(conn: aiosqlite.Connection) -> int:
    """Create a fresh schema or upgrade an older one in place; refuse a newer one.

    Runs in one ``BEGIN IMMEDIATE`` transaction: either the file ends at
    :data:`CURRENT_VERSION` or it is left as it was. Returns the version found.
    """
    found = await check_schema_version(conn)
    if found == CURRENT_VERSION:
        return found
    await conn.execute("BEGIN IMMEDIATE")
    try:
        found = await check_schema_version(conn)  # another process may have upgraded
        if found < CURRENT_VERSION:
            await _upgrade(conn)
            await conn.execute(f"PRAGMA user_version = {CURRENT_VERSION}")
        await conn.execute("COMMIT")
    except BaseException:
        await rollback(conn)
        raise
    if found < CURRENT_VERSION:
        logger.info("database schema at version %d (was %d)", CURRENT_VERSION, found)
    return found


async def _upgrade(conn: aiosqlite.Connection) -> None:
    for table in TABLES:
        await _ensure_table(conn, table)
    for statement in INDEXES:
        await conn.execute(statement)
    await _fill_timestamps(conn)
    await _fill_content_hashes(conn)
    await _upgrade_vec_table(conn)
    await ensure_keyword_index(conn)
    await upgrade_spaces(conn)


async def _in_transaction(conn: aiosqlite.Connection, work: Callable[[], Awaitable[None]]) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await work()
        await conn.execute("COMMIT")
    except BaseException:
        await rollback(conn)
        raise


async def _has_table(conn: aiosqlite.Connection, name: str) -> bool:
    rows = list(
        await conn.execute_fetchall(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
    )
    return bool(rows[0][0])


async def _columns(conn: aiosqlite.Connection, table: str) -> set[str]:
    rows = await conn.execute_fetchall(f"PRAGMA table_info({table})")
    return {str(row[1]) for row in rows}


async def _ensure_table(conn: aiosqlite.Connection, table: _Table) -> None:
    present = await _columns(conn, table.name)
    if not present:
        await conn.execute(table.create_sql())
        return
    missing_required = [name for name in table.required if name not in present]
    if missing_required:
        raise SchemaVersionError(
            f"table {table.name} lacks {', '.join(missing_required)}: this database was "
            "not made by asemantic or its original design"
        )
    for name, definition in table.columns:
        if name not in present:
            await conn.execute(f"ALTER TABLE {table.name} ADD COLUMN {name} {definition}")


async def _fill_timestamps(conn: aiosqlite.Connection) -> None:
    await conn.execute("UPDATE documents SET updated_at = created_at WHERE updated_at = ''")
    await conn.execute(
        "UPDATE chunks SET created_at = (SELECT d.created_at FROM documents d "
        "WHERE d.id = chunks.document_id) WHERE created_at = ''"
    )
    await conn.execute("UPDATE chunks SET updated_at = created_at WHERE updated_at = ''")


def vector_source_hash(text: str, meta_json: str) -> str:
    """SHA-256 hex of a chunk's vector source (as ``domain.hashing.content_hash``)."""
    source = text
    try:
        meta = json.loads(meta_json or "{}")
    except ValueError:
        meta = None
    if isinstance(meta, dict) and isinstance(meta.get("_vector_source"), str):
        source = meta["_vector_source"]
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


async def _fill_content_hashes(conn: aiosqlite.Connection) -> None:
    last_id = 0
    while True:
        rows = list(
            await conn.execute_fetchall(
                "SELECT id, text, meta_json FROM chunks WHERE content_hash = '' AND id > ? "
                "ORDER BY id LIMIT ?",
                (last_id, _HASH_BATCH),
            )
        )
        if not rows:
            return
        updates = [(vector_source_hash(str(text), str(meta)), int(i)) for i, text, meta in rows]
        await conn.executemany("UPDATE chunks SET content_hash = ? WHERE id = ?", updates)
        last_id = int(rows[-1][0])


async def _upgrade_vec_table(conn: aiosqlite.Connection) -> None:
    ddl = await vec_table_ddl(conn)
    if ddl is None:
        # No vectors anywhere: every chunk waits for an embedding.
        await conn.execute("UPDATE chunks SET embedding_status = 'PENDING'")
        return
    dimensions = dimensions_of(ddl) or _V0_DEFAULT_DIMENSIONS
    if await read_space(conn) is None:
        await conn.execute(
            "INSERT INTO embedding_space (id, model, dimensions, task_type) VALUES (1, ?, ?, ?)",
            (DEFAULT_MODEL, dimensions, V0_ASSUMED_TASK_TYPE),
        )
    if "distance_metric=cosine" not in ddl.replace(" ", "").lower():
        await _rebuild_vec_table(conn, dimensions)
    await create_vec_triggers(conn)
    await conn.execute(f"DELETE FROM {VEC_TABLE} WHERE rowid NOT IN (SELECT id FROM chunks)")
    await conn.execute(
        "UPDATE chunks SET embedding_status = 'PENDING' "
        f"WHERE id NOT IN (SELECT rowid FROM {VEC_TABLE})"
    )


async def _rebuild_vec_table(conn: aiosqlite.Connection, dimensions: int) -> None:
    """Recreate vec_chunks with the cosine metric, copying every vector.

    vec0 cannot be renamed (its shadow tables keep the old name), so the vectors pass
    through a temporary table inside the same transaction.
    """
    await conn.execute("CREATE TEMP TABLE asemantic_vec_copy (id INTEGER PRIMARY KEY, v BLOB)")
    await conn.execute(
        f"INSERT INTO asemantic_vec_copy (id, v) SELECT rowid, embedding FROM {VEC_TABLE}"
    )
    await conn.execute(f"DROP TABLE {VEC_TABLE}")
    await create_vec_table(conn, dimensions)
    await conn.execute(
        f"INSERT INTO {VEC_TABLE} (rowid, embedding) SELECT id, v FROM asemantic_vec_copy"
    )
    await conn.execute("DROP TABLE asemantic_vec_copy")


async def prepare_database(
    writer: aiosqlite.Connection, driver: Driver, space: EmbeddingSpace | None
) -> tuple[EmbeddingSpace | None, bool, int]:
    """Refuse a newer schema untouched, then WAL, schema upgrade, the space, the KNN
    pre-filter probe. Returns the active space, the probe's answer, the active id."""
    try:
        await check_schema_version(writer)
        await enable_wal(writer)
        await ensure_schema_compatibility(writer)
        if not await _has_table(writer, "embedding_spaces"):
            # A version-2 file made before the spaces step existed (a development build).
            await _in_transaction(writer, lambda: upgrade_spaces(writer))
        active = await read_active_space(writer)
        if active is not None and active[0] != 1:
            check_same_space(active[1], space)
            await ensure_vector_log(writer)
            await ensure_keyword_log(writer)
            return active[1], await knn_prefilter_works(writer, driver.error), active[0]
        recorded = await ensure_space(writer, space)
        if recorded is not None and active is None:
            # A file recorded before version 2, or killed between the two commits.
            await _in_transaction(writer, lambda: record_home_space(writer, recorded))
        await ensure_vector_log(writer)
        await ensure_keyword_log(writer)
        return recorded, await knn_prefilter_works(writer, driver.error), 1
    except driver.error as exc:
        raise StoreError(f"cannot prepare the database: {exc}") from exc
