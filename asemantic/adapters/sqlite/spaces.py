"""Several embedding spaces in one SQLite file (see :mod:`asemantic.domain.spaces`).

Space 1 is the file's own: ``embedding_space``, the chunk columns, ``vec_chunks`` and
``batch_jobs``. Every other space *n* has its rows in ``space_chunks`` and
``space_batch_jobs`` and its vectors in ``vec_space_<n>`` (vec0 tables have a fixed
dimension), with two triggers: a ``space_chunks`` row deleted (by hand, by a drop, or by
the cascade of its chunk's deletion) or leaving READY deletes its vector.

Every change here is one ``BEGIN IMMEDIATE`` transaction on the store's writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from asemantic.adapters.sqlite.search import filter_conditions, hit_from_row, is_filtered
from asemantic.adapters.sqlite.vectors import vec_chunk_size
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import (
    HOME_SPACE_ID,
    SpaceChunk,
    SpaceProgress,
    SpaceRecord,
    StoredSpaceState,
)
from asemantic.errors import SpaceError, SpaceIncompleteError, UnknownSpaceError
from asemantic.ports import JobStore, SearchFilters

if TYPE_CHECKING:
    from asemantic.adapters.sqlite.store import SqliteStore

__all__ = [
    "SPACE_DDL",
    "SqliteSpaces",
    "queue_document",
    "read_active_space",
    "record_home_space",
    "space_integrity_problems",
    "space_search",
    "upgrade_spaces",
    "vec_space_table",
    "write_active_vectors",
]

SPACE_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS embedding_spaces (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    task_type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'standby', 'retired')),
    created_at TEXT NOT NULL DEFAULT '',
    activated_at TEXT,
    previous_id INTEGER
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS embedding_spaces_one_active ON embedding_spaces (state) "
    "WHERE state = 'active'",
    """CREATE TABLE IF NOT EXISTS space_batch_jobs (
    id TEXT PRIMARY KEY,
    space_id INTEGER NOT NULL REFERENCES embedding_spaces(id),
    google_job_id TEXT UNIQUE,
    display_name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'CREATED' CHECK (status IN
        ('CREATED', 'SUBMITTED', 'PROCESSING', 'COMPLETED', 'FAILED')),
    input_file TEXT,
    output_file TEXT,
    stats TEXT NOT NULL DEFAULT '{}',
    error_message TEXT,
    created_at TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL DEFAULT '',
    cleaned_at TEXT,
    create_attempted_at TEXT
)""",
    "CREATE INDEX IF NOT EXISTS space_batch_jobs_space ON space_batch_jobs (space_id, status)",
    """CREATE TABLE IF NOT EXISTS space_batch_job_transitions (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES space_batch_jobs(id) ON DELETE CASCADE,
    from_status TEXT,
    to_status TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL DEFAULT '',
    stats TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS space_batch_job_transitions_job "
    "ON space_batch_job_transitions (job_id, id)",
    """CREATE TABLE IF NOT EXISTS space_chunks (
    space_id INTEGER NOT NULL REFERENCES embedding_spaces(id),
    chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('READY', 'PENDING', 'FAILED')),
    batch_job_id TEXT REFERENCES space_batch_jobs(id) ON DELETE SET NULL,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (space_id, chunk_id)
)""",
    "CREATE INDEX IF NOT EXISTS space_chunks_status ON space_chunks "
    "(space_id, status, batch_job_id)",
    "CREATE INDEX IF NOT EXISTS space_chunks_job ON space_chunks (batch_job_id) "
    "WHERE batch_job_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS space_chunks_chunk ON space_chunks (chunk_id)",
)
"""The tables of schema version 2 for spaces (idempotent, additive)."""

_SPACE_COLUMNS = "id, model, dimensions, task_type, state, created_at, activated_at, previous_id"


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def upgrade_spaces(conn: aiosqlite.Connection) -> None:
    """The spaces step of the schema upgrade (inside its transaction): the tables, and
    the file's recorded space as space 1, active."""
    for statement in SPACE_DDL:
        await conn.execute(statement)
    await conn.execute(
        "INSERT OR IGNORE INTO embedding_spaces (id, model, dimensions, task_type, state, "
        "created_at, activated_at) SELECT 1, model, dimensions, task_type, 'active', ?, ? "
        "FROM embedding_space WHERE id = 1",
        (_now(), _now()),
    )


async def record_home_space(conn: aiosqlite.Connection, space: EmbeddingSpace) -> None:
    """Space 1, active, when the file's space is first recorded (inside a transaction)."""
    now = _now()
    await conn.execute(
        "INSERT OR IGNORE INTO embedding_spaces (id, model, dimensions, task_type, state, "
        "created_at, activated_at) VALUES (1, ?, ?, ?, 'active', ?, ?)",
        (space.model, space.dimensions, space.task_type, now, now),
    )


async def read_active_space(conn: aiosqlite.Connection) -> tuple[int, EmbeddingSpace] | None:
    """The active space's id and space, or None when none is recorded yet."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT id, model, dimensions, task_type FROM embedding_spaces WHERE state = 'active'"
        )
    )
    if not rows:
        return None
    space_id, model, dimensions, task_type = rows[0]
    space = EmbeddingSpace(model=str(model), dimensions=int(dimensions), task_type=str(task_type))
    return int(space_id), space


def vec_space_table(space_id: int) -> str:
    """The vec0 table of space ``space_id`` (space 1's is ``vec_chunks``)."""
    if space_id == HOME_SPACE_ID:
        return "vec_chunks"
    return f"vec_space_{int(space_id)}"


def _triggers(space_id: int) -> tuple[str, ...]:
    n = int(space_id)
    table = vec_space_table(n)
    return (
        f"CREATE TRIGGER IF NOT EXISTS space_{n}_vec_delete AFTER DELETE ON space_chunks "
        f"WHEN OLD.space_id = {n} BEGIN DELETE FROM {table} WHERE rowid = OLD.chunk_id; END",
        f"CREATE TRIGGER IF NOT EXISTS space_{n}_vec_unready AFTER UPDATE OF status "
        f"ON space_chunks WHEN NEW.space_id = {n} AND NEW.status <> 'READY' "
        f"BEGIN DELETE FROM {table} WHERE rowid = NEW.chunk_id; END",
    )


async def queue_document(conn: aiosqlite.Connection, document_id: int, now: str) -> None:
    """Queue the document's chunks PENDING for every live space other than 1 that has
    no row for them yet (inside the write's transaction)."""
    await conn.execute(
        "INSERT OR IGNORE INTO space_chunks (space_id, chunk_id, status, updated_at) "
        "SELECT s.id, c.id, 'PENDING', ? FROM embedding_spaces s CROSS JOIN chunks c "
        "WHERE s.id <> 1 AND s.state <> 'retired' AND c.document_id = ?",
        (now, document_id),
    )


async def apply_space_vectors(
    conn: aiosqlite.Connection, space_id: int, mapping: Mapping[int, bytes], now: str
) -> int:
    """Store vectors of space ``space_id`` and mark their rows READY (in a transaction).

    Rows that do not exist (a chunk gone, a space dropped) are skipped.
    """
    ids = [int(i) for i in mapping]
    rows = await conn.execute_fetchall(
        "SELECT chunk_id FROM space_chunks WHERE space_id = ? AND chunk_id IN "
        "(SELECT value FROM json_each(?))",
        (space_id, json.dumps(ids)),
    )
    present = [int(row[0]) for row in rows]
    if not present:
        return 0
    table = vec_space_table(space_id)
    await conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(i,) for i in present])
    await conn.executemany(
        f"INSERT INTO {table} (rowid, embedding) VALUES (?, ?)",
        [(i, bytes(mapping[i])) for i in present],
    )
    await conn.executemany(
        "UPDATE space_chunks SET status = 'READY', error_message = NULL, updated_at = ? "
        "WHERE space_id = ? AND chunk_id = ?",
        [(now, space_id, i) for i in present],
    )
    return len(present)


async def write_active_vectors(
    conn: aiosqlite.Connection,
    space_id: int,
    document_id: int,
    vectors: Mapping[str, bytes],
    now: str,
) -> int:
    """Vectors by content hash for the document's chunks in space ``space_id`` that
    lack one (a sync ingestion while that space is active; inside its transaction)."""
    if not vectors:
        return 0
    rows = await conn.execute_fetchall(
        "SELECT c.id, c.content_hash FROM chunks c JOIN space_chunks s ON s.chunk_id = c.id "
        "AND s.space_id = ? WHERE c.document_id = ? AND s.status <> 'READY'",
        (space_id, document_id),
    )
    mapping = {int(i): vectors[str(h)] for i, h in rows if str(h) in vectors}
    return await apply_space_vectors(conn, space_id, mapping, now)


_HIT_COLUMNS = (
    "c.id, c.document_id, d.source, d.title, c.text, c.position, c.meta_json, "
    "knn.distance, d.metadata_json"
)


async def space_search(
    reader: aiosqlite.Connection,
    space_id: int,
    blob: bytes,
    *,
    k: int,
    filters: SearchFilters | None,
) -> list[SearchHit]:
    """The k READY chunks of space ``space_id`` nearest to ``blob`` (a vec0 KNN query,
    pre-filtered by rowid when ``filters`` restrict anything)."""
    table = vec_space_table(space_id)
    params: list[object] = [blob, k]
    restrict = ""
    if filters is not None and is_filtered(filters):
        conditions, extra = filter_conditions(filters)
        where = " AND ".join(conditions)
        restrict = (
            " AND rowid IN (SELECT c.id FROM documents d CROSS JOIN chunks c "
            f"ON c.document_id = d.id WHERE {where})"
        )
        params.extend(extra)
    sql = (
        f"WITH knn AS (SELECT rowid AS chunk_id, distance FROM {table} "
        f"WHERE embedding MATCH ? AND k = ?{restrict}) "
        f"SELECT {_HIT_COLUMNS} FROM knn JOIN chunks c ON c.id = knn.chunk_id "
        "JOIN documents d ON d.id = c.document_id JOIN space_chunks s "
        "ON s.chunk_id = c.id AND s.space_id = ? WHERE s.status = 'READY' "
        "ORDER BY knn.distance, c.id"
    )
    rows = await reader.execute_fetchall(sql, [*params, space_id])
    return [hit_from_row(row) for row in rows]


async def _scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> int:
    rows = list(await conn.execute_fetchall(sql, tuple(params)))
    return int(rows[0][0] or 0)


async def space_integrity_problems(conn: aiosqlite.Connection) -> list[str]:
    """Vectors of spaces other than 1 agree with their rows; exactly one space is active."""
    problems: list[str] = []
    if not await _scalar(
        conn, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'embedding_spaces'"
    ):
        return problems
    spaces = list(await conn.execute_fetchall("SELECT id, state FROM embedding_spaces"))
    if spaces and sum(1 for _, state in spaces if state == "active") != 1:
        problems.append("not exactly one active embedding space")
    for space_id, state in spaces:
        n = int(space_id)
        if n == HOME_SPACE_ID:
            continue
        if state == "retired":
            left = await _scalar(conn, "SELECT COUNT(*) FROM space_chunks WHERE space_id = ?", (n,))
            if left:
                problems.append(f"space {n} is retired but keeps {left} chunk rows")
            continue
        table = vec_space_table(n)
        missing = await _scalar(
            conn,
            "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM space_chunks s "
            "WHERE s.space_id = ? AND s.chunk_id = c.id)",
            (n,),
        )
        if missing:
            problems.append(f"{missing} chunks have no row in space {n}")
        stray = await _scalar(
            conn,
            f"SELECT COUNT(*) FROM {table} WHERE rowid NOT IN (SELECT chunk_id FROM "
            "space_chunks WHERE space_id = ? AND status = 'READY')",
            (n,),
        )
        if stray:
            problems.append(f"{stray} vectors of space {n} belong to no READY chunk")
        ready = await _scalar(
            conn,
            "SELECT COUNT(*) FROM space_chunks WHERE space_id = ? AND status = 'READY'",
            (n,),
        )
        vectors = await _scalar(conn, f"SELECT COUNT(*) FROM {table}")
        if vectors - stray != ready:
            problems.append(f"{ready - (vectors - stray)} READY chunks of space {n} lack a vector")
    return problems


def _space_from_row(row: Sequence[Any], progress: SpaceProgress) -> SpaceRecord:
    space_id, model, dimensions, task_type, state, created_at, activated_at, previous = row
    return SpaceRecord(
        space_id=int(space_id),
        space=EmbeddingSpace(
            model=str(model), dimensions=int(dimensions), task_type=str(task_type)
        ),
        stored=StoredSpaceState(state),
        created_at=datetime.fromisoformat(created_at) if created_at else datetime.now(UTC),
        activated_at=datetime.fromisoformat(activated_at) if activated_at else None,
        previous_id=int(previous) if previous is not None else None,
        progress=progress,
    )


_PROGRESS_HOME = (
    "SELECT json_array(COUNT(*), "
    "COALESCE(SUM(embedding_status = 'READY'), 0), "
    "COALESCE(SUM(embedding_status = 'PENDING'), 0), "
    "COALESCE(SUM(embedding_status = 'FAILED'), 0), "
    "COALESCE(SUM(CASE WHEN embedding_status = 'READY' THEN "
    "json_extract(meta_json, '$.token_estimate') END), 0)) FROM chunks"
)
_PROGRESS_SPACES = (
    "SELECT json_group_array(json(p)) FROM (SELECT json_array(s.space_id, "
    "COALESCE(SUM(s.status = 'READY'), 0), "
    "COALESCE(SUM(s.status = 'PENDING'), 0), COALESCE(SUM(s.status = 'FAILED'), 0), "
    "COALESCE(SUM(CASE WHEN s.status = 'READY' THEN "
    "json_extract(c.meta_json, '$.token_estimate') END), 0)) AS p "
    "FROM space_chunks s JOIN chunks c ON c.id = s.chunk_id GROUP BY s.space_id)"
)


class SqliteSpaces:
    """The spaces of one SQLite file (``store.spaces``)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._jobs: dict[int, JobStore] = {}

    def __repr__(self) -> str:
        return f"SqliteSpaces({self._store!r})"

    async def list_spaces(self) -> list[SpaceRecord]:
        """Every registered space, by id, with its progress (one snapshot)."""
        rows = await self._store.fetchall(
            "SELECT (SELECT json_group_array(json_array("
            f"{_SPACE_COLUMNS})) FROM embedding_spaces), "
            f"({_PROGRESS_HOME}), ({_PROGRESS_SPACES})"
        )
        spaces_json, home_json, others_json = (json.loads(v or "[]") for v in rows[0])
        total, ready, pending, failed, tokens = home_json
        progress = {
            HOME_SPACE_ID: SpaceProgress(
                ready=ready, pending=pending, failed=failed, total=total, tokens_ready=tokens
            )
        }
        for space_id, s_ready, s_pending, s_failed, s_tokens in others_json or []:
            progress[int(space_id)] = SpaceProgress(
                ready=s_ready,
                pending=s_pending,
                failed=s_failed,
                total=total,
                tokens_ready=s_tokens,
            )
        return sorted(
            (
                _space_from_row(row, progress.get(int(row[0]), SpaceProgress(total=total)))
                for row in spaces_json or []
            ),
            key=lambda record: record.space_id,
        )

    async def get(self, space_id: int) -> SpaceRecord:
        """The space ``space_id``; :class:`UnknownSpaceError` if there is none."""
        for record in await self.list_spaces():
            if record.space_id == space_id:
                return record
        raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")

    async def migration_inputs(self) -> tuple[int, int]:
        """(chunks, estimated tokens) a new space would embed: every chunk."""
        rows = await self._store.fetchall(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(meta_json, '$.token_estimate')), 0) "
            "FROM chunks"
        )
        return int(rows[0][0]), int(rows[0][1] or 0)

    async def register(self, space: EmbeddingSpace) -> SpaceRecord:
        """Register ``space`` (standby) and queue every chunk PENDING for it, in one
        transaction. Refused (:class:`SpaceError`) when a live space is the same."""
        now = _now()
        async with self._store.transaction() as conn:
            live = list(
                await conn.execute_fetchall(
                    "SELECT id FROM embedding_spaces WHERE state <> 'retired' AND model = ? "
                    "AND dimensions = ? AND task_type = ?",
                    (space.model, space.dimensions, space.task_type),
                )
            )
            if live:
                raise SpaceError(
                    f"space {int(live[0][0])} already is {space.describe()}: nothing to migrate"
                )
            cursor = await conn.execute(
                "INSERT INTO embedding_spaces (model, dimensions, task_type, state, created_at) "
                "VALUES (?, ?, ?, 'standby', ?)",
                (space.model, space.dimensions, space.task_type, now),
            )
            space_id = int(cursor.lastrowid or 0)
            table = vec_space_table(space_id)
            await conn.execute(
                f"CREATE VIRTUAL TABLE {table} USING vec0(embedding float[{space.dimensions}] "
                f"distance_metric=cosine, chunk_size={vec_chunk_size(space.dimensions)})"
            )
            for statement in _triggers(space_id):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO space_chunks (space_id, chunk_id, status, updated_at) "
                "SELECT ?, id, 'PENDING', ? FROM chunks",
                (space_id, now),
            )
        return await self.get(space_id)

    async def switch(self, space_id: int, *, force: bool = False) -> SpaceRecord:
        """Make ``space_id`` the active space in one transaction (the pointer moves; no
        vector does). Refused when it is retired, or lacks vectors and not ``force``."""
        now = _now()
        async with self._store.transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT state FROM embedding_spaces WHERE id = ?", (space_id,)
                )
            )
            if not rows:
                raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")
            state = str(rows[0][0])
            if state == "active":
                raise SpaceError(f"space {space_id} is already the active space")
            if state == "retired":
                raise SpaceError(f"space {space_id} was dropped: its vectors are gone")
            missing = await _missing(conn, space_id)
            if missing and not force:
                raise SpaceIncompleteError(
                    f"space {space_id} lacks vectors for {missing} chunk(s); wait for the "
                    "backfill (asemantic space status) or force the switch"
                )
            previous = list(
                await conn.execute_fetchall(
                    "SELECT id FROM embedding_spaces WHERE state = 'active'"
                )
            )
            await conn.execute(
                "UPDATE embedding_spaces SET state = 'standby' WHERE state = 'active'"
            )
            await conn.execute(
                "UPDATE embedding_spaces SET state = 'active', activated_at = ?, previous_id = ? "
                "WHERE id = ?",
                (now, int(previous[0][0]) if previous else None, space_id),
            )
        return await self.get(space_id)

    async def drop(self, space_id: int) -> int:
        """Delete a standby space's vectors and rows and retire it; how many vectors went.
        Refused for the active space and for space 1."""
        async with self._store.transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT state FROM embedding_spaces WHERE id = ?", (space_id,)
                )
            )
            if not rows:
                raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")
            state = str(rows[0][0])
            if state == "active":
                raise SpaceError("the active space cannot be dropped; switch to another first")
            if state == "retired":
                raise SpaceError(f"space {space_id} was dropped already")
            if space_id == HOME_SPACE_ID:
                raise SpaceError(
                    "space 1 holds the chunk table's own state and cannot be dropped in "
                    "this version"
                )
            table = vec_space_table(space_id)
            gone = await _scalar(conn, f"SELECT COUNT(*) FROM {table}")
            await conn.execute(f"DROP TRIGGER IF EXISTS space_{int(space_id)}_vec_delete")
            await conn.execute(f"DROP TRIGGER IF EXISTS space_{int(space_id)}_vec_unready")
            await conn.execute(f"DROP TABLE {table}")
            await conn.execute("DELETE FROM space_chunks WHERE space_id = ?", (space_id,))
            await conn.execute(
                "UPDATE embedding_spaces SET state = 'retired' WHERE id = ?", (space_id,)
            )
        return gone

    def jobs(self, space_id: int, space: EmbeddingSpace) -> JobStore:
        """The :class:`~asemantic.ports.JobStore` of space ``space_id`` (space 1: the
        store's own)."""
        if space_id == HOME_SPACE_ID:
            return self._store.jobs
        if space_id not in self._jobs:
            from asemantic.adapters.sqlite.space_jobs import SqliteSpaceJobStore

            self._jobs[space_id] = SqliteSpaceJobStore(self._store, space_id, space)
        return self._jobs[space_id]

    async def vector_rows(self, space_id: int) -> list[tuple[int, bytes]]:
        """Every vector row of a space as (chunk id, blob), by chunk id."""
        table = vec_space_table(space_id)
        rows = await self._store.fetchall(f"SELECT rowid, embedding FROM {table} ORDER BY rowid")
        return [(int(rowid), bytes(blob)) for rowid, blob in rows]

    async def uncleaned_jobs(self) -> dict[int, int]:
        """Per space other than 1: its jobs not yet cleaned up."""
        rows = await self._store.fetchall(
            "SELECT space_id, COUNT(*) FROM space_batch_jobs WHERE cleaned_at IS NULL "
            "GROUP BY space_id"
        )
        return {int(space_id): int(n) for space_id, n in rows}

    async def space_chunks(self, space_id: int) -> list[SpaceChunk]:
        """Every chunk's state in space ``space_id`` (not 1), by chunk id."""
        return await _space_chunks(self._store, space_id)


async def _space_chunks(store: SqliteStore, space_id: int) -> list[SpaceChunk]:
    rows = await store.fetchall(
        "SELECT chunk_id, status, batch_job_id, error_message, attempts FROM space_chunks "
        "WHERE space_id = ? ORDER BY chunk_id",
        (space_id,),
    )
    return [
        SpaceChunk(
            chunk_id=int(r[0]),
            status=str(r[1]),
            job_id=r[2],
            error_message=r[3],
            attempts=int(r[4]),
        )
        for r in rows
    ]


async def _missing(conn: aiosqlite.Connection, space_id: int) -> int:
    if space_id == HOME_SPACE_ID:
        return await _scalar(conn, "SELECT COUNT(*) FROM chunks WHERE embedding_status <> 'READY'")
    return await _scalar(
        conn,
        "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM space_chunks s "
        "WHERE s.space_id = ? AND s.chunk_id = c.id AND s.status = 'READY')",
        (space_id,),
    )


async def with_space_status(
    conn: aiosqlite.Connection, space_id: int, hits: Sequence[SearchHit]
) -> list[SearchHit]:
    """``hits`` with each chunk's embedding status in space ``space_id`` (a chunk the
    space has no row for yet is PENDING there)."""
    ids = json.dumps([hit.chunk_id for hit in hits])
    rows = await conn.execute_fetchall(
        "SELECT chunk_id, status FROM space_chunks WHERE space_id = ? "
        "AND chunk_id IN (SELECT value FROM json_each(?))",
        (space_id, ids),
    )
    status = {int(row[0]): EmbeddingStatus(row[1]) for row in rows}
    return [
        replace(hit, embedding_status=status.get(hit.chunk_id, EmbeddingStatus.PENDING))
        for hit in hits
    ]
