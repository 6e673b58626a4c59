"""Batch jobs in SQLite: the :class:`~asemantic.ports.JobStore` beside the SqliteStore.

Each method is one ``BEGIN IMMEDIATE`` transaction on the store's writer (reads go
through the reader). What must change together changes in one transaction: a job row
and the assignment of its chunks; a transition and the release of the job's chunks; a
slice of results' vectors and their chunks' statuses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from asemantic.adapters.planning import load_stats
from asemantic.adapters.results import (
    ChunkState,
    ChunkUpdate,
    Verdict,
    judge_result,
    release,
    result_chunk_id,
)
from asemantic.adapters.sqlite.connection import insert_usage, utc_now
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.ports import (
    ApplyCounts,
    BatchSnapshot,
    JobChange,
    JobChunk,
    JobNote,
    JobRecord,
    JobTransition,
    Lease,
    LineResult,
    QueuedChunk,
)

if TYPE_CHECKING:
    from asemantic.adapters.sqlite.store import SqliteStore

__all__ = ["SqliteJobStore"]

_JOB_COLUMNS = (
    "id, display_name, status, google_job_id, input_file, output_file, stats, "
    "error_message, created_at, updated_at, cleaned_at, create_attempted_at"
)
_QUEUED = (
    "SELECT id, length(CAST(COALESCE(json_extract(meta_json, '$._vector_source'), text) "
    "AS BLOB)) FROM chunks WHERE embedding_status = 'PENDING' AND batch_job_id IS NULL "
    "ORDER BY id"
)
_SNAPSHOT = (
    "SELECT (SELECT json_group_array(json_array(id, display_name, status, google_job_id, "
    "input_file, output_file, stats, error_message, created_at, updated_at, cleaned_at, "
    "create_attempted_at)) FROM batch_jobs WHERE cleaned_at IS NULL), "
    "(SELECT json_group_array(json_array(id, length(CAST(COALESCE(json_extract(meta_json, "
    "'$._vector_source'), text) AS BLOB)))) FROM chunks "
    "WHERE embedding_status = 'PENDING' AND batch_job_id IS NULL), "
    "(SELECT COUNT(*) FROM chunks WHERE embedding_status = 'PENDING')"
)
"""The uncleaned jobs, the queued chunks (id, size as :data:`_QUEUED` measures it) and
the PENDING count, in one statement: one committed snapshot. Sorted in Python (an
aggregate's input order is not guaranteed)."""
_JOB_CHUNKS = (
    "SELECT c.id, c.content_hash, COALESCE(json_extract(c.meta_json, '$._vector_source'), "
    "c.text), d.title, c.attempts FROM chunks c JOIN documents d ON d.id = c.document_id "
    "WHERE c.batch_job_id = ? AND c.embedding_status = 'PENDING' ORDER BY c.id"
)
_JOB_HASHES = (
    "SELECT id, content_hash FROM chunks WHERE batch_job_id = ? "
    "AND embedding_status = 'PENDING' ORDER BY id"
)
_PENDING_CHUNKS = (
    "SELECT c.id, c.content_hash, COALESCE(json_extract(c.meta_json, '$._vector_source'), "
    "c.text), d.title, c.attempts FROM chunks c JOIN documents d ON d.id = c.document_id "
    "WHERE c.embedding_status = 'PENDING' ORDER BY c.id LIMIT ?"
)
_UPDATE_CHUNK_STATUS = (
    "UPDATE chunks SET embedding_status = ?, error_message = ?, attempts = ?, "
    "batch_job_id = ?, updated_at = ? WHERE id = ?"
)
_TARGETS = (
    "SELECT json_group_array(json_array(id, content_hash, embedding_status, batch_job_id, "
    "attempts, json_extract(meta_json, '$.token_estimate'))) FROM chunks "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
"""The chunks a slice of results names, as one JSON row: one step of SQLite, where a
row per chunk would take the GIL back once per row."""


class SqliteJobStore:
    """Batch jobs, their chunks and the supervisor lease, in the store's file."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"SqliteJobStore({self._store!r})"

    async def database_id(self) -> str:
        """A random id made once per database file (names its remote objects)."""
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('database_id', ?)",
                (uuid.uuid4().hex,),
            )
            rows = list(
                await conn.execute_fetchall(
                    "SELECT value FROM store_meta WHERE key = 'database_id'"
                )
            )
        return str(rows[0][0])

    async def snapshot(self) -> BatchSnapshot:
        """Uncleaned jobs (oldest first), queued chunks (by id), PENDING count: one read."""
        rows = await self._store.fetchall(_SNAPSHOT)
        jobs_json, queued_json, pending = rows[0]
        job_rows = sorted(json.loads(jobs_json or "[]"), key=lambda r: (r[8], r[0]))
        queued = sorted((int(i), int(size or 0)) for i, size in json.loads(queued_json or "[]"))
        return BatchSnapshot(
            jobs=tuple(_record(row) for row in job_rows),
            queued=tuple(QueuedChunk(chunk_id=i, size=size) for i, size in queued),
            pending=int(pending),
        )

    async def queued_chunks(self) -> list[QueuedChunk]:
        rows = await self._store.fetchall(_QUEUED)
        return [QueuedChunk(chunk_id=int(r[0]), size=int(r[1] or 0)) for r in rows]

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None:
        """Commit a CREATED job and assign it the chunks still queued.

        Returns the committed job, read in the same transaction; None when none of
        ``chunk_ids`` was still queued (no job is left behind).
        """
        now = utc_now()
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT INTO batch_jobs (id, display_name, status, stats, created_at, "
                "updated_at) VALUES (?, ?, 'CREATED', '{}', ?, ?)",
                (job_id, display_name, now, now),
            )
            cursor = await conn.execute(
                "UPDATE chunks SET batch_job_id = ?, updated_at = ? WHERE id IN "
                "(SELECT value FROM json_each(?)) AND embedding_status = 'PENDING' "
                "AND batch_job_id IS NULL",
                (job_id, now, json.dumps([int(i) for i in chunk_ids])),
            )
            assigned = cursor.rowcount
            if assigned <= 0:
                await conn.execute("DELETE FROM batch_jobs WHERE id = ?", (job_id,))
                return None
            await conn.execute(
                "UPDATE batch_jobs SET stats = ? WHERE id = ?",
                (json.dumps({"sent": assigned}), job_id),
            )
            await _record_transition(conn, job_id, None, JobStatus.CREATED, now, {"sent": assigned})
            return await _read_job(conn, job_id)

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._store.fetchall(
            f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = ?", (job_id,)
        )
        return _record(rows[0]) if rows else None

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]:
        sql = f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE 1 = 1"
        params: list[Any] = []
        if statuses is not None:
            sql += " AND status IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([JobStatus(s).value for s in statuses]))
        if uncleaned:
            sql += " AND cleaned_at IS NULL"
        rows = await self._store.fetchall(sql + " ORDER BY created_at, id", tuple(params))
        return [_record(row) for row in rows]

    async def job_chunks(self, job_id: str) -> list[JobChunk]:
        rows = await self._store.fetchall(_JOB_CHUNKS, (job_id,))
        return [
            JobChunk(
                chunk_id=int(r[0]),
                content_hash=str(r[1]),
                text=str(r[2]),
                title=r[3],
                attempts=int(r[4]),
            )
            for r in rows
        ]

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks, by id."""
        rows = await self._store.fetchall(_JOB_HASHES, (job_id,))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        """Up to ``limit`` PENDING chunks, queued or in a job, by id, with their text."""
        rows = await self._store.fetchall(_PENDING_CHUNKS, (max(0, limit),))
        return [
            JobChunk(
                chunk_id=int(r[0]),
                content_hash=str(r[1]),
                text=str(r[2]),
                title=r[3],
                attempts=int(r[4]),
            )
            for r in rows
        ]

    async def transition_job(self, change: JobChange) -> JobRecord | None:
        """Compare-and-set the job's status, record the transition, release chunks."""
        at = change.at.isoformat()
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE batch_jobs SET status = ?, updated_at = ?, stats = COALESCE(?, stats), "
                "google_job_id = COALESCE(?, google_job_id), "
                "input_file = COALESCE(?, input_file), output_file = COALESCE(?, output_file), "
                "error_message = COALESCE(?, error_message) WHERE id = ? AND status = ?",
                (
                    change.to.value,
                    at,
                    json.dumps(dict(change.stats)) if change.stats is not None else None,
                    change.remote_name,
                    change.input_file,
                    change.output_file,
                    change.error_message,
                    change.job_id,
                    change.expected.value,
                ),
            )
            if cursor.rowcount != 1:
                return None
            if change.release is not None:
                await _release(
                    conn, change.job_id, change.release, change.release_reason or "job ended", at
                )
            record = await _read_job(conn, change.job_id)
            await _record_transition(
                conn, change.job_id, change.expected, change.to, at, dict(record.stats)
            )
        return record

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts:
        """Vectors and chunk statuses of one slice of results, in one transaction.

        A result counts only for a chunk that is still PENDING in this job with the
        same text (hash prefix of its key); anything else is stale and discarded.
        """
        chunk_ids = [result_chunk_id(result) for result in results]
        ids = [i for i in chunk_ids if i is not None]
        now = utc_now()
        async with self._store.transaction() as conn:
            rows = list(await conn.execute_fetchall(_TARGETS, (json.dumps(ids),)))
            found = json.loads(rows[0][0] or "[]") if rows else []
            current = {int(r[0]): _chunk_state(r) for r in found}
            vectors: dict[int, bytes] = {}
            updates: list[tuple[str, str | None, int, str | None, str, int]] = []
            counts = dict.fromkeys(Verdict, 0)
            tokens = 0
            for result, chunk_id in zip(results, chunk_ids, strict=True):
                chunk = current.get(chunk_id) if chunk_id is not None else None
                judged = judge_result(result, chunk, job_id=job_id, retry=retry)
                counts[judged.verdict] += 1
                if judged.vector is not None and chunk is not None:
                    vectors[chunk.chunk_id] = judged.vector
                    tokens += judged.tokens
                elif judged.update is not None:
                    updates.append(_update_row(judged.update, now))
            if updates:
                await conn.executemany(_UPDATE_CHUNK_STATUS, updates)
            # Every chunk of ``vectors`` was read above, in this transaction.
            ready = await self._store.apply_vectors(conn, vectors, existing=True)
            if ready:
                await insert_usage(conn, "batch", texts=ready, tokens=tokens, at=now)
        return ApplyCounts(
            ready=ready,
            failed=counts[Verdict.FAILED],
            retried=counts[Verdict.RETRIED],
            stale=counts[Verdict.STALE],
        )

    async def mark_cleaned(self, job_id: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE batch_jobs SET cleaned_at = ? WHERE id = ?", (utc_now(), job_id)
            )

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None:
        """Record (or, with None, clear) a remote create whose outcome is not known."""
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE batch_jobs SET create_attempted_at = ? WHERE id = ?",
                (at.isoformat() if at is not None else None, job_id),
            )

    async def note_job(self, note: JobNote) -> JobRecord | None:
        """Stats and input file of a job still in ``note.expected`` (no transition)."""
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE batch_jobs SET stats = COALESCE(?, stats), input_file = CASE "
                "WHEN ? THEN NULL ELSE COALESCE(?, input_file) END WHERE id = ? AND status = ?",
                (
                    json.dumps(dict(note.stats)) if note.stats is not None else None,
                    note.clear_input_file,
                    note.input_file,
                    note.job_id,
                    note.expected.value,
                ),
            )
            if cursor.rowcount != 1:
                return None
            return await _read_job(conn, note.job_id)

    async def shrink_job(self, job_id: str, *, keep: int) -> int:
        """The chunks of a CREATED job past its first ``keep`` go back to the queue."""
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE chunks SET batch_job_id = NULL, updated_at = ? WHERE id IN ("
                "SELECT c.id FROM chunks c JOIN batch_jobs j ON j.id = c.batch_job_id "
                "WHERE c.batch_job_id = ? AND j.status = 'CREATED' "
                "AND c.embedding_status = 'PENDING' ORDER BY c.id LIMIT -1 OFFSET ?)",
                (utc_now(), job_id, max(0, keep)),
            )
            return max(0, cursor.rowcount)

    async def job_token_limit(self) -> int | None:
        rows = await self._store.fetchall(
            "SELECT value FROM store_meta WHERE key = 'job_token_limit'"
        )
        return int(rows[0][0]) if rows and rows[0][0] else None

    async def set_job_token_limit(self, tokens: int | None) -> None:
        async with self._store.transaction() as conn:
            if tokens is None:
                await conn.execute("DELETE FROM store_meta WHERE key = 'job_token_limit'")
            else:
                await conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ('job_token_limit', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(int(tokens)),),
                )

    async def acquire_lease(self, owner: str, *, ttl: float, now: float) -> Lease:
        """Take or renew the supervisor lease unless another live owner holds it."""
        async with self._store.transaction() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT owner, expires_at FROM supervisor_lease WHERE id = 1"
                )
            )
            if rows and rows[0][0] not in (None, owner) and float(rows[0][1] or 0) > now:
                return Lease(owner=str(rows[0][0]), expires_at=float(rows[0][1]), acquired=False)
            await conn.execute(
                "INSERT INTO supervisor_lease (id, owner, expires_at) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at",
                (owner, now + ttl),
            )
        return Lease(owner=owner, expires_at=now + ttl, acquired=True)

    async def release_lease(self, owner: str) -> None:
        async with self._store.transaction() as conn:
            await conn.execute("DELETE FROM supervisor_lease WHERE id = 1 AND owner = ?", (owner,))

    async def transitions(self, job_id: str) -> list[JobTransition]:
        """The job's recorded transitions, oldest first."""
        rows = await self._store.fetchall(
            "SELECT from_status, to_status, at FROM batch_job_transitions "
            "WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [
            JobTransition(
                job_id=job_id,
                from_status=JobStatus(from_status) if from_status else None,
                to_status=JobStatus(to_status),
                at=datetime.fromisoformat(at),
            )
            for from_status, to_status, at in rows
        ]

    async def current_lease(self) -> Lease | None:
        """The lease as held (``acquired`` False), or None when nobody holds it."""
        rows = await self._store.fetchall(
            "SELECT owner, expires_at FROM supervisor_lease WHERE id = 1 AND owner IS NOT NULL"
        )
        if not rows:
            return None
        owner, expires_at = rows[0]
        return Lease(owner=str(owner), expires_at=float(expires_at), acquired=False)


async def _read_job(conn: aiosqlite.Connection, job_id: str) -> JobRecord:
    """The job ``job_id`` as the transaction on ``conn`` sees it (it must exist)."""
    rows = list(
        await conn.execute_fetchall(
            f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = ?", (job_id,)
        )
    )
    return _record(rows[0])


async def _release(
    conn: aiosqlite.Connection, job_id: str, policy: RetryPolicy, reason: str, at: str
) -> None:
    """The job's chunks still PENDING leave it: queued again, or FAILED when spent."""
    rows = await conn.execute_fetchall(
        "SELECT id, attempts FROM chunks WHERE batch_job_id = ? AND embedding_status = 'PENDING'",
        (job_id,),
    )
    updates = [
        _update_row(release(int(chunk_id), int(attempts), policy, job_id=job_id, reason=reason), at)
        for chunk_id, attempts in rows
    ]
    if updates:
        await conn.executemany(_UPDATE_CHUNK_STATUS, updates)


def _chunk_state(row: Sequence[Any]) -> ChunkState:
    """A ``_TARGETS`` row as the result judge sees it."""
    return ChunkState(
        chunk_id=int(row[0]),
        content_hash=str(row[1]),
        status=EmbeddingStatus(row[2]),
        job_id=row[3],
        attempts=int(row[4]),
        token_estimate=int(row[5] or 0),
    )


def _update_row(update: ChunkUpdate, at: str) -> tuple[str, str | None, int, str | None, str, int]:
    """The ``_UPDATE_CHUNK_STATUS`` parameters of one chunk update."""
    return (
        update.status.value,
        update.error_message,
        update.attempts,
        update.job_id,
        at,
        update.chunk_id,
    )


async def _record_transition(
    conn: aiosqlite.Connection,
    job_id: str,
    from_status: JobStatus | None,
    to_status: JobStatus,
    at: str,
    stats: dict[str, int],
) -> None:
    await conn.execute(
        "INSERT INTO batch_job_transitions (job_id, from_status, to_status, at, stats) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            job_id,
            from_status.value if from_status else None,
            to_status.value,
            at,
            json.dumps(stats),
        ),
    )


def _record(row: Sequence[Any]) -> JobRecord:
    return JobRecord(
        job_id=str(row[0]),
        display_name=str(row[1]),
        status=JobStatus(row[2]),
        remote_name=row[3],
        input_file=row[4],
        output_file=row[5],
        stats=load_stats(row[6]),
        error_message=row[7],
        created_at=datetime.fromisoformat(row[8]),
        updated_at=datetime.fromisoformat(row[9]),
        cleaned=row[10] is not None,
        create_attempted_at=datetime.fromisoformat(row[11]) if row[11] else None,
    )
