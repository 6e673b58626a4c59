"""The :class:`~asemantic.ports.JobStore` of one embedding space other than space 1.

The same contracts as :class:`~asemantic.adapters.sqlite.jobs.SqliteJobStore`, on that
space's tables: its jobs are ``space_batch_jobs`` rows with its ``space_id``, its
per-chunk state ``space_chunks``, its vectors ``vec_space_<n>``. The lease and the
learned token limit are the file's own (one supervisor drives every space). Its
``database_id`` is ``s<n>-`` plus the file's, so its remote objects carry a prefix of
their own (see :mod:`asemantic.domain.spaces`).
"""

from __future__ import annotations

import json
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
from asemantic.adapters.sqlite.jobs import SqliteJobStore
from asemantic.adapters.sqlite.spaces import apply_space_vectors
from asemantic.adapters.vectors import check_blobs
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import (
    ApplyCounts,
    BatchSnapshot,
    JobChange,
    JobChunk,
    JobNote,
    JobRecord,
    JobTransition,
    LineResult,
    QueuedChunk,
)

if TYPE_CHECKING:
    from asemantic.adapters.sqlite.store import SqliteStore

__all__ = ["SqliteSpaceJobStore"]

_JOB_COLUMNS = (
    "id, display_name, status, google_job_id, input_file, output_file, stats, "
    "error_message, created_at, updated_at, cleaned_at, create_attempted_at"
)
_SIZE = "length(CAST(COALESCE(json_extract(c.meta_json, '$._vector_source'), c.text) AS BLOB))"
_QUEUED = (
    f"SELECT c.id, {_SIZE} FROM space_chunks s JOIN chunks c ON c.id = s.chunk_id "
    "WHERE s.space_id = ? AND s.status = 'PENDING' AND s.batch_job_id IS NULL ORDER BY c.id"
)
_SNAPSHOT = (
    "SELECT (SELECT json_group_array(json_array(id, display_name, status, google_job_id, "
    "input_file, output_file, stats, error_message, created_at, updated_at, cleaned_at, "
    "create_attempted_at)) FROM space_batch_jobs WHERE space_id = ?1 AND cleaned_at IS NULL), "
    f"(SELECT json_group_array(json_array(c.id, {_SIZE})) FROM space_chunks s "
    "JOIN chunks c ON c.id = s.chunk_id "
    "WHERE s.space_id = ?1 AND s.status = 'PENDING' AND s.batch_job_id IS NULL), "
    "(SELECT COUNT(*) FROM space_chunks WHERE space_id = ?1 AND status = 'PENDING')"
)
_CHUNK_COLUMNS = (
    "c.id, c.content_hash, COALESCE(json_extract(c.meta_json, '$._vector_source'), c.text), "
    "d.title, s.attempts FROM space_chunks s JOIN chunks c ON c.id = s.chunk_id "
    "JOIN documents d ON d.id = c.document_id"
)
_UPDATE_STATUS = (
    "UPDATE space_chunks SET status = ?, error_message = ?, attempts = ?, batch_job_id = ?, "
    "updated_at = ? WHERE space_id = ? AND chunk_id = ?"
)


class SqliteSpaceJobStore(SqliteJobStore):
    """Batch jobs of space ``space_id`` (lease and token limit shared with the file)."""

    def __init__(self, store: SqliteStore, space_id: int, space: EmbeddingSpace) -> None:
        super().__init__(store)
        self._space_id = int(space_id)
        self._space = space

    def __repr__(self) -> str:
        return f"SqliteSpaceJobStore(space={self._space_id})"

    @property
    def space_id(self) -> int:
        return self._space_id

    async def database_id(self) -> str:
        """``s<n>-`` and the file's id: this space's remote objects have their own prefix."""
        return f"s{self._space_id}-{await super().database_id()}"

    async def snapshot(self) -> BatchSnapshot:
        rows = await self._store.fetchall(_SNAPSHOT, (self._space_id,))
        jobs_json, queued_json, pending = rows[0]
        job_rows = sorted(json.loads(jobs_json or "[]"), key=lambda r: (r[8], r[0]))
        queued = sorted((int(i), int(size or 0)) for i, size in json.loads(queued_json or "[]"))
        return BatchSnapshot(
            jobs=tuple(_record(row) for row in job_rows),
            queued=tuple(QueuedChunk(chunk_id=i, size=size) for i, size in queued),
            pending=int(pending),
        )

    async def queued_chunks(self) -> list[QueuedChunk]:
        rows = await self._store.fetchall(_QUEUED, (self._space_id,))
        return [QueuedChunk(chunk_id=int(r[0]), size=int(r[1] or 0)) for r in rows]

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None:
        now = utc_now()
        async with self._store.transaction() as conn:
            await conn.execute(
                "INSERT INTO space_batch_jobs (id, space_id, display_name, status, stats, "
                "created_at, updated_at) VALUES (?, ?, ?, 'CREATED', '{}', ?, ?)",
                (job_id, self._space_id, display_name, now, now),
            )
            cursor = await conn.execute(
                "UPDATE space_chunks SET batch_job_id = ?, updated_at = ? WHERE space_id = ? "
                "AND chunk_id IN (SELECT value FROM json_each(?)) AND status = 'PENDING' "
                "AND batch_job_id IS NULL",
                (job_id, now, self._space_id, json.dumps([int(i) for i in chunk_ids])),
            )
            assigned = cursor.rowcount
            if assigned <= 0:
                await conn.execute("DELETE FROM space_batch_jobs WHERE id = ?", (job_id,))
                return None
            await conn.execute(
                "UPDATE space_batch_jobs SET stats = ? WHERE id = ?",
                (json.dumps({"sent": assigned}), job_id),
            )
            await _record_transition(conn, job_id, None, JobStatus.CREATED, now, {"sent": assigned})
            return await _read_job(conn, job_id)

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._store.fetchall(
            f"SELECT {_JOB_COLUMNS} FROM space_batch_jobs WHERE id = ? AND space_id = ?",
            (job_id, self._space_id),
        )
        return _record(rows[0]) if rows else None

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]:
        sql = f"SELECT {_JOB_COLUMNS} FROM space_batch_jobs WHERE space_id = ?"
        params: list[Any] = [self._space_id]
        if statuses is not None:
            sql += " AND status IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([JobStatus(s).value for s in statuses]))
        if uncleaned:
            sql += " AND cleaned_at IS NULL"
        rows = await self._store.fetchall(sql + " ORDER BY created_at, id", tuple(params))
        return [_record(row) for row in rows]

    async def job_chunks(self, job_id: str) -> list[JobChunk]:
        rows = await self._store.fetchall(
            f"SELECT {_CHUNK_COLUMNS} WHERE s.space_id = ? AND s.batch_job_id = ? "
            "AND s.status = 'PENDING' ORDER BY c.id",
            (self._space_id, job_id),
        )
        return [_job_chunk(r) for r in rows]

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks in this space, by id."""
        rows = await self._store.fetchall(
            "SELECT c.id, c.content_hash FROM space_chunks s JOIN chunks c ON c.id = s.chunk_id "
            "WHERE s.space_id = ? AND s.batch_job_id = ? AND s.status = 'PENDING' ORDER BY c.id",
            (self._space_id, job_id),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        rows = await self._store.fetchall(
            f"SELECT {_CHUNK_COLUMNS} WHERE s.space_id = ? AND s.status = 'PENDING' "
            "ORDER BY c.id LIMIT ?",
            (self._space_id, max(0, limit)),
        )
        return [_job_chunk(r) for r in rows]

    async def transition_job(self, change: JobChange) -> JobRecord | None:
        at = change.at.isoformat()
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE space_batch_jobs SET status = ?, updated_at = ?, "
                "stats = COALESCE(?, stats), google_job_id = COALESCE(?, google_job_id), "
                "input_file = COALESCE(?, input_file), output_file = COALESCE(?, output_file), "
                "error_message = COALESCE(?, error_message) WHERE id = ? AND status = ? "
                "AND space_id = ?",
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
                    self._space_id,
                ),
            )
            if cursor.rowcount != 1:
                return None
            if change.release is not None:
                await self._release(
                    conn, change.job_id, change.release, change.release_reason or "job ended", at
                )
            record = await _read_job(conn, change.job_id)
            await _record_transition(
                conn, change.job_id, change.expected, change.to, at, dict(record.stats)
            )
        return record

    async def _release(
        self, conn: aiosqlite.Connection, job_id: str, policy: RetryPolicy, reason: str, at: str
    ) -> None:
        rows = await conn.execute_fetchall(
            "SELECT chunk_id, attempts FROM space_chunks WHERE space_id = ? AND "
            "batch_job_id = ? AND status = 'PENDING'",
            (self._space_id, job_id),
        )
        updates = [
            self._update_row(
                release(int(chunk_id), int(attempts), policy, job_id=job_id, reason=reason), at
            )
            for chunk_id, attempts in rows
        ]
        if updates:
            await conn.executemany(_UPDATE_STATUS, updates)

    def _update_row(self, update: ChunkUpdate, at: str) -> tuple[Any, ...]:
        return (
            update.status.value,
            update.error_message,
            update.attempts,
            update.job_id,
            at,
            self._space_id,
            update.chunk_id,
        )

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts:
        """Vectors and statuses of one slice of results, in one transaction; a result
        counts only for a chunk still PENDING in this job with the same text."""
        ids = [i for i in map(result_chunk_id, results) if i is not None]
        now = utc_now()
        async with self._store.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT c.id, c.content_hash, s.status, s.batch_job_id, s.attempts, "
                "json_extract(c.meta_json, '$.token_estimate') FROM space_chunks s "
                "JOIN chunks c ON c.id = s.chunk_id WHERE s.space_id = ? "
                "AND s.chunk_id IN (SELECT value FROM json_each(?))",
                (self._space_id, json.dumps(ids)),
            )
            current = {int(r[0]): _chunk_state(r) for r in rows}
            vectors: dict[int, bytes] = {}
            updates: list[tuple[Any, ...]] = []
            counts = dict.fromkeys(Verdict, 0)
            tokens = 0
            for result in results:
                chunk_id = result_chunk_id(result)
                chunk = current.get(chunk_id) if chunk_id is not None else None
                judged = judge_result(result, chunk, job_id=job_id, retry=retry)
                counts[judged.verdict] += 1
                if judged.vector is not None and chunk is not None:
                    vectors[chunk.chunk_id] = judged.vector
                    tokens += judged.tokens
                elif judged.update is not None:
                    updates.append(self._update_row(judged.update, now))
            if updates:
                await conn.executemany(_UPDATE_STATUS, updates)
            ready = 0
            if vectors:
                check_blobs(vectors.items(), self._space)
                ready = await apply_space_vectors(conn, self._space_id, vectors, now)
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
                "UPDATE space_batch_jobs SET cleaned_at = ? WHERE id = ?", (utc_now(), job_id)
            )

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None:
        async with self._store.transaction() as conn:
            await conn.execute(
                "UPDATE space_batch_jobs SET create_attempted_at = ? WHERE id = ?",
                (at.isoformat() if at is not None else None, job_id),
            )

    async def note_job(self, note: JobNote) -> JobRecord | None:
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE space_batch_jobs SET stats = COALESCE(?, stats), input_file = CASE "
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
        async with self._store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE space_chunks SET batch_job_id = NULL, updated_at = ? WHERE space_id = ? "
                "AND chunk_id IN (SELECT s.chunk_id FROM space_chunks s JOIN space_batch_jobs j "
                "ON j.id = s.batch_job_id WHERE s.space_id = ? AND s.batch_job_id = ? "
                "AND j.status = 'CREATED' AND s.status = 'PENDING' ORDER BY s.chunk_id "
                "LIMIT -1 OFFSET ?)",
                (utc_now(), self._space_id, self._space_id, job_id, max(0, keep)),
            )
            return max(0, cursor.rowcount)

    async def transitions(self, job_id: str) -> list[JobTransition]:
        rows = await self._store.fetchall(
            "SELECT from_status, to_status, at FROM space_batch_job_transitions "
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


def _job_chunk(row: Sequence[Any]) -> JobChunk:
    return JobChunk(
        chunk_id=int(row[0]),
        content_hash=str(row[1]),
        text=str(row[2]),
        title=row[3],
        attempts=int(row[4]),
    )


def _chunk_state(row: Sequence[Any]) -> ChunkState:
    return ChunkState(
        chunk_id=int(row[0]),
        content_hash=str(row[1]),
        status=EmbeddingStatus(row[2]),
        job_id=row[3],
        attempts=int(row[4]),
        token_estimate=int(row[5] or 0),
    )


async def _read_job(conn: aiosqlite.Connection, job_id: str) -> JobRecord:
    rows = list(
        await conn.execute_fetchall(
            f"SELECT {_JOB_COLUMNS} FROM space_batch_jobs WHERE id = ?", (job_id,)
        )
    )
    return _record(rows[0])


async def _record_transition(
    conn: aiosqlite.Connection,
    job_id: str,
    from_status: JobStatus | None,
    to_status: JobStatus,
    at: str,
    stats: dict[str, int],
) -> None:
    await conn.execute(
        "INSERT INTO space_batch_job_transitions (job_id, from_status, to_status, at, stats) "
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
