"""Batch jobs in PostgreSQL: the :class:`~asemantic.ports.JobStore` beside the PostgresStore.

The same semantics as :class:`~asemantic.adapters.sqlite.jobs.SqliteJobStore`, safe for
many processes on many hosts at once. Each method is one transaction on a pool
connection; what must change together changes in one transaction: a job row and the
assignment of its chunks; a transition, its history row and the release of the job's
chunks; a slice of results' vectors, their chunks' statuses and the usage line.

Decisions:

* **Job creation claims chunks with ``FOR UPDATE SKIP LOCKED``**: two processes
  flushing at once never put a chunk in two jobs, and neither waits for the other (a
  chunk locked by a concurrent writer stays queued for the next flush).
* **Transitions are compare-and-set** (``UPDATE ... WHERE id = $1 AND status = $2``):
  of two supervisors moving one job, one wins and the other gets None. The history row
  is written in the same transaction.
* **Results are judged under row locks** (``SELECT ... FOR UPDATE`` of the chunks a
  slice names, in id order), by the shared rules of :mod:`asemantic.adapters.results`,
  then written in bulk: vectors by the store's ``COPY`` into a temporary table and one
  upsert into ``chunk_vectors`` (:func:`asemantic.adapters.postgres.vectors.apply`),
  statuses by one ``UPDATE ... FROM unnest(...)``. Applying the same
  slice twice changes nothing (every line is stale the second time).
* **Snapshots are one ``REPEATABLE READ`` read-only transaction**, so the jobs, the
  queue and the PENDING count agree.
* **The supervisor lease is an advisory lock with a row beside it**
  (:mod:`.lease`, where the active/standby choice is argued); a remote create is only
  recorded (``mark_create_attempt``) while the server confirms that this store's lock
  session still holds the lease, in the same transaction.
* Driver errors leave as typed :class:`~asemantic.errors.StoreError` (a duplicate job id,
  display name or remote name included); a closed store raises
  :class:`~asemantic.errors.StoreClosedError` from every call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from asemantic.adapters.planning import load_stats
from asemantic.adapters.postgres.connection import DRIVER_ERRORS, connect_error, store_error
from asemantic.adapters.postgres.lease import (
    FENCE,
    KEEPALIVE_SETTINGS,
    SESSION_ERRORS,
    SESSION_PREFIX,
    LeaseSessions,
    lease_key,
)
from asemantic.adapters.results import (
    ChunkState,
    ChunkUpdate,
    Verdict,
    judge_result,
    release,
    result_chunk_id,
)
from asemantic.adapters.vectors import check_blobs
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import StoreClosedError, StoreError
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

__all__ = ["JobHost", "PostgresJobStore"]

logger = logging.getLogger(__name__)

_JOB_COLUMNS = (
    "id, display_name, status, google_job_id, input_file, output_file, stats, "
    "error_message, created_at, updated_at, cleaned_at, create_attempted_at"
)
_SOURCE = "COALESCE(c.meta_json::jsonb ->> '_vector_source', c.text)"
_QUEUED = (
    f"SELECT c.id, octet_length({_SOURCE}) FROM chunks c "
    "WHERE c.embedding_status = 'PENDING' AND c.batch_job_id IS NULL ORDER BY c.id"
)
_UNCLEANED = (
    f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE cleaned_at IS NULL ORDER BY created_at, id"
)
_PENDING = "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'PENDING'"
_CLAIM = (
    "WITH claimable AS (SELECT id FROM chunks WHERE id = ANY($2::bigint[]) "
    "AND embedding_status = 'PENDING' AND batch_job_id IS NULL ORDER BY id "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE chunks c SET batch_job_id = $1, updated_at = now() FROM claimable "
    "WHERE c.id = claimable.id"
)
_JOB_CHUNKS = (
    f"SELECT c.id, c.content_hash, {_SOURCE}, d.title, c.attempts FROM chunks c "
    "JOIN documents d ON d.id = c.document_id "
    "WHERE c.batch_job_id = $1 AND c.embedding_status = 'PENDING' ORDER BY c.id"
)
_JOB_HASHES = (
    "SELECT id, content_hash FROM chunks WHERE batch_job_id = $1 "
    "AND embedding_status = 'PENDING' ORDER BY id"
)
_PENDING_CHUNKS = (
    f"SELECT c.id, c.content_hash, {_SOURCE}, d.title, c.attempts FROM chunks c "
    "JOIN documents d ON d.id = c.document_id "
    "WHERE c.embedding_status = 'PENDING' ORDER BY c.id LIMIT $1"
)
_NOTE = (
    "UPDATE batch_jobs SET stats = COALESCE($3::jsonb, stats), input_file = CASE "
    "WHEN $4 THEN NULL ELSE COALESCE($5, input_file) END "
    f"WHERE id = $1 AND status = $2 RETURNING {_JOB_COLUMNS}"
)
_SHRINK = (
    "UPDATE chunks SET batch_job_id = NULL, updated_at = now() WHERE id IN ("
    "SELECT c.id FROM chunks c JOIN batch_jobs j ON j.id = c.batch_job_id "
    "WHERE c.batch_job_id = $1 AND j.status = 'CREATED' AND c.embedding_status = 'PENDING' "
    "ORDER BY c.id OFFSET $2 FOR UPDATE OF c)"
)
_TOKEN_LIMIT = "job_token_limit"  # noqa: S105 - a setting's name, not a secret
_TARGETS = (
    "SELECT id, content_hash, embedding_status, batch_job_id, attempts, "
    "meta_json::jsonb ->> 'token_estimate' FROM chunks WHERE id = ANY($1::bigint[]) "
    "ORDER BY id FOR UPDATE"
)
_RELEASABLE = (
    "SELECT id, attempts FROM chunks WHERE batch_job_id = $1 AND embedding_status = 'PENDING' "
    "ORDER BY id FOR UPDATE"
)
_UPDATE_CHUNKS = (
    "UPDATE chunks c SET embedding_status = u.status, error_message = u.message, "
    "attempts = u.attempts, batch_job_id = u.job_id, updated_at = now() "
    "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[]) "
    "AS u(id, status, message, attempts, job_id) WHERE c.id = u.id"
)
_TRANSITION = (
    "UPDATE batch_jobs SET status = $3, updated_at = $4, stats = COALESCE($5::jsonb, stats), "
    "google_job_id = COALESCE($6, google_job_id), input_file = COALESCE($7, input_file), "
    "output_file = COALESCE($8, output_file), error_message = COALESCE($9, error_message) "
    f"WHERE id = $1 AND status = $2 RETURNING {_JOB_COLUMNS}"
)


class JobHost(Protocol):
    """What the job store uses of its :class:`~asemantic.adapters.postgres.store.PostgresStore`.

    ``transaction()`` raises :class:`~asemantic.errors.StoreClosedError` once the store
    is closed and types driver errors; ``apply_vectors`` writes checked vectors inside
    the caller's transaction; ``url`` (password included) opens the lease's own
    connections and is scrubbed from every message.
    """

    @property
    def url(self) -> str: ...

    @property
    def space(self) -> EmbeddingSpace | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def pool(self) -> Any: ...

    @property
    def database_id(self) -> str: ...

    def transaction(
        self, *, isolation: str = ..., readonly: bool = ...
    ) -> AbstractAsyncContextManager[Any]: ...

    async def apply_vectors(self, conn: Any, mapping: Mapping[int, bytes]) -> int: ...


class PostgresJobStore:
    """Batch jobs, their chunks and the supervisor lease, in the store's database."""

    def __init__(self, host: JobHost) -> None:
        self._host = host
        self._lease: LeaseSessions | None = None

    def __repr__(self) -> str:
        return f"PostgresJobStore(database_id={self._host.database_id!r})"

    # --- plumbing ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._host.closed:
            raise StoreClosedError("the store is closed")

    def _transaction(self, **options: Any) -> AbstractAsyncContextManager[Any]:
        return self._host.transaction(**options)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        self._check_open()
        try:
            return list(await self._host.pool.fetch(sql, *args))
        except DRIVER_ERRORS as exc:
            if self._host.closed:
                raise StoreClosedError("the store was closed during the call") from exc
            raise store_error(exc, url=self._host.url) from exc

    # --- identity ---------------------------------------------------------------------

    async def database_id(self) -> str:
        """A random id made with the schema (names its remote objects and the lease)."""
        self._check_open()
        return self._host.database_id

    # --- reads ------------------------------------------------------------------------

    async def snapshot(self) -> BatchSnapshot:
        """Uncleaned jobs (oldest first), queued chunks (by id), PENDING count: one read."""
        async with self._transaction(isolation="repeatable_read", readonly=True) as conn:
            jobs = await conn.fetch(_UNCLEANED)
            queued = await conn.fetch(_QUEUED)
            pending = await conn.fetchval(_PENDING)
        return BatchSnapshot(
            jobs=tuple(_record(row) for row in jobs),
            queued=tuple(_queued(row) for row in queued),
            pending=int(pending),
        )

    async def queued_chunks(self) -> list[QueuedChunk]:
        return [_queued(row) for row in await self._fetch(_QUEUED)]

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE id = $1", job_id)
        return _record(rows[0]) if rows else None

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]:
        sql = f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE true"
        args: list[object] = []
        if statuses is not None:
            args.append([JobStatus(s).value for s in statuses])
            sql += f" AND status = ANY(${len(args)}::text[])"
        if uncleaned:
            sql += " AND cleaned_at IS NULL"
        rows = await self._fetch(sql + " ORDER BY created_at, id", *args)
        return [_record(row) for row in rows]

    async def job_chunks(self, job_id: str) -> list[JobChunk]:
        return [_job_chunk(r) for r in await self._fetch(_JOB_CHUNKS, job_id)]

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks, by id."""
        return [(int(r[0]), str(r[1])) for r in await self._fetch(_JOB_HASHES, job_id)]

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        """Up to ``limit`` PENDING chunks, queued or in a job, by id, with their text."""
        return [_job_chunk(r) for r in await self._fetch(_PENDING_CHUNKS, max(0, limit))]

    async def job_token_limit(self) -> int | None:
        """The tokens per job this database learned the provider accepts (None: none)."""
        rows = await self._fetch("SELECT value FROM store_meta WHERE key = $1", _TOKEN_LIMIT)
        return int(rows[0][0]) if rows and rows[0][0] else None

    async def transitions(self, job_id: str) -> list[JobTransition]:
        """The job's recorded transitions, oldest first (empty for an unknown job)."""
        rows = await self._fetch(
            "SELECT from_status, to_status, at FROM batch_job_transitions "
            "WHERE job_id = $1 ORDER BY id",
            job_id,
        )
        return [
            JobTransition(
                job_id=job_id,
                from_status=JobStatus(r[0]) if r[0] else None,
                to_status=JobStatus(r[1]),
                at=r[2],
            )
            for r in rows
        ]

    async def current_lease(self) -> Lease | None:
        """The lease row as held (``acquired`` False), or None when nobody holds it."""
        rows = await self._fetch(
            "SELECT owner, expires_at FROM supervisor_lease WHERE id = 1 AND owner IS NOT NULL"
        )
        if not rows:
            return None
        return Lease(owner=str(rows[0][0]), expires_at=float(rows[0][1]), acquired=False)

    # --- writes -----------------------------------------------------------------------

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None:
        """Commit a CREATED job and claim for it the chunks still queued.

        Returns the committed job; None (and no job) when none of ``chunk_ids`` could be
        claimed. Safe under concurrent callers (see the module doc).
        """
        ids = sorted({int(i) for i in chunk_ids})
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO batch_jobs (id, display_name, status, stats) "
                "VALUES ($1, $2, 'CREATED', '{}')",
                job_id,
                display_name,
            )
            assigned = _rowcount(await conn.execute(_CLAIM, job_id, ids)) if ids else 0
            if assigned <= 0:
                await conn.execute("DELETE FROM batch_jobs WHERE id = $1", job_id)
                return None
            stats = json.dumps({"sent": assigned})
            row = await conn.fetchrow(
                f"UPDATE batch_jobs SET stats = $2::jsonb WHERE id = $1 RETURNING {_JOB_COLUMNS}",
                job_id,
                stats,
            )
            created_at = row["created_at"]
            await _record_transition(conn, job_id, None, JobStatus.CREATED, created_at, stats)
        return _record(row)

    async def transition_job(self, change: JobChange) -> JobRecord | None:
        """Compare-and-set the job's status, record the transition, release chunks."""
        stats = json.dumps(dict(change.stats)) if change.stats is not None else None
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                _TRANSITION,
                change.job_id,
                change.expected.value,
                change.to.value,
                change.at,
                stats,
                change.remote_name,
                change.input_file,
                change.output_file,
                change.error_message,
            )
            if row is None:
                return None
            if change.release is not None:
                reason = change.release_reason or "job ended"
                await _release(conn, change.job_id, change.release, reason)
            await _record_transition(
                conn, change.job_id, change.expected, change.to, change.at, row["stats"]
            )
        return _record(row)

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts:
        """Vectors and chunk statuses of one slice of results, in one transaction.

        A result counts only for a chunk that is still PENDING in this job with the
        same text (hash prefix of its key); anything else is stale and discarded.
        """
        ids = sorted({i for i in map(result_chunk_id, results) if i is not None})
        async with self._transaction() as conn:
            rows = await conn.fetch(_TARGETS, ids) if ids else []
            current = {int(r[0]): _chunk_state(r) for r in rows}
            vectors: dict[int, bytes] = {}
            updates: list[ChunkUpdate] = []
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
                    updates.append(judged.update)
            if vectors:
                check_blobs(vectors.items(), self._host.space)
            await _update_chunks(conn, updates)
            ready = await self._host.apply_vectors(conn, vectors)
            if ready:
                await conn.execute(
                    "INSERT INTO usage_ledger (route, texts, tokens) VALUES ('batch', $1, $2)",
                    ready,
                    tokens,
                )
        return ApplyCounts(
            ready=ready,
            failed=counts[Verdict.FAILED],
            retried=counts[Verdict.RETRIED],
            stale=counts[Verdict.STALE],
        )

    async def note_job(self, note: JobNote) -> JobRecord | None:
        """Stats and input file of a job still in ``note.expected`` (no transition)."""
        stats = json.dumps(dict(note.stats)) if note.stats is not None else None
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                _NOTE,
                note.job_id,
                note.expected.value,
                stats,
                note.clear_input_file,
                note.input_file,
            )
        return _record(row) if row is not None else None

    async def shrink_job(self, job_id: str, *, keep: int) -> int:
        """The chunks of a CREATED job past its first ``keep`` go back to the queue."""
        async with self._transaction() as conn:
            return _rowcount(await conn.execute(_SHRINK, job_id, max(0, keep)))

    async def set_job_token_limit(self, tokens: int | None) -> None:
        """Remember (or, with None, forget) the tokens per job the provider accepts."""
        async with self._transaction() as conn:
            if tokens is None:
                await conn.execute("DELETE FROM store_meta WHERE key = $1", _TOKEN_LIMIT)
            else:
                await conn.execute(
                    "INSERT INTO store_meta (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    _TOKEN_LIMIT,
                    str(int(tokens)),
                )

    async def mark_cleaned(self, job_id: str) -> None:
        async with self._transaction() as conn:
            await conn.execute("UPDATE batch_jobs SET cleaned_at = now() WHERE id = $1", job_id)

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None:
        """Record (or, with None, clear) a remote create whose outcome is not known.

        Recording one is fenced: while an owner holds the supervisor lease through this
        store, the server must confirm in the same transaction that the lease is still
        its own, or :class:`StoreError` is raised and nothing is written (the caller
        then sends no create).
        """
        self._check_open()  # a closed store says so before any fence does
        fence = self._lease.fence() if self._lease is not None and at is not None else None
        async with self._transaction() as conn:
            if fence is not None and not await conn.fetchval(FENCE, *fence):
                self._check_open()  # closed meanwhile: the lease sessions ended with it
                logger.warning("supervisor lease no longer held here; create not recorded")
                raise StoreError(
                    "this process no longer holds the database's supervisor lease "
                    "(another supervisor took over); the batch create was not sent"
                )
            await conn.execute(
                "UPDATE batch_jobs SET create_attempted_at = $2 WHERE id = $1", job_id, at
            )

    # --- the lease (see .lease) -------------------------------------------------------

    async def _sessions(self) -> LeaseSessions:
        if self._lease is None:
            key = lease_key(await self.database_id())
            self._lease = LeaseSessions(self._connect_lock_session, key)
        return self._lease

    async def _connect_lock_session(self, owner: str) -> Any:
        url = self._host.url
        name = (SESSION_PREFIX + owner).encode()[:63].decode(errors="ignore")
        settings = {**KEEPALIVE_SETTINGS, "application_name": name}
        try:
            return await asyncpg.connect(url, server_settings=settings, timeout=10.0)
        except DRIVER_ERRORS as exc:
            raise connect_error(exc, url) from None

    async def acquire_lease(self, owner: str, *, ttl: float, now: float) -> Lease:
        """Take or renew the supervisor lease unless another live owner holds it."""
        self._check_open()
        sessions = await self._sessions()
        try:
            return await sessions.acquire(owner, ttl=ttl, now=now)
        except SESSION_ERRORS as exc:
            raise store_error(exc, url=self._host.url) from exc

    async def release_lease(self, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it (its lock session ends)."""
        self._check_open()
        deleted = False
        if self._lease is not None:
            try:
                deleted = await self._lease.release(owner)
            except SESSION_ERRORS:
                logger.warning("releasing the supervisor lease's session failed; it ended")
        if not deleted:
            async with self._transaction() as conn:
                await conn.execute(
                    "DELETE FROM supervisor_lease WHERE id = 1 AND owner = $1", owner
                )

    async def aclose(self) -> None:
        """End every lock session (the server frees the lease's lock at once). Idempotent."""
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.aclose()


# --- rows ----------------------------------------------------------------------------


def _rowcount(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def _job_chunk(row: Any) -> JobChunk:
    return JobChunk(
        chunk_id=int(row[0]),
        content_hash=str(row[1]),
        text=str(row[2]),
        title=row[3],
        attempts=int(row[4]),
    )


def _queued(row: Any) -> QueuedChunk:
    return QueuedChunk(chunk_id=int(row[0]), size=int(row[1] or 0))


def _record(row: Any) -> JobRecord:
    return JobRecord(
        job_id=str(row["id"]),
        display_name=str(row["display_name"]),
        status=JobStatus(row["status"]),
        remote_name=row["google_job_id"],
        input_file=row["input_file"],
        output_file=row["output_file"],
        stats=load_stats(row["stats"]),
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cleaned=row["cleaned_at"] is not None,
        create_attempted_at=row["create_attempted_at"],
    )


def _chunk_state(row: Any) -> ChunkState:
    """A ``_TARGETS`` row as the result judge sees it."""
    return ChunkState(
        chunk_id=int(row[0]),
        content_hash=str(row[1]),
        status=EmbeddingStatus(row[2]),
        job_id=row[3],
        attempts=int(row[4]),
        token_estimate=int(row[5] or 0),
    )


# --- writes inside a transaction -----------------------------------------------------


async def _update_chunks(conn: Any, updates: Sequence[ChunkUpdate]) -> None:
    """Status, message, attempts and job of each updated chunk, in one statement."""
    if not updates:
        return
    await conn.execute(
        _UPDATE_CHUNKS,
        [u.chunk_id for u in updates],
        [u.status.value for u in updates],
        [u.error_message for u in updates],
        [u.attempts for u in updates],
        [u.job_id for u in updates],
    )


async def _release(conn: Any, job_id: str, policy: RetryPolicy, reason: str) -> None:
    """The job's chunks still PENDING leave it: queued again, or FAILED when spent."""
    rows = await conn.fetch(_RELEASABLE, job_id)
    updates = [release(int(r[0]), int(r[1]), policy, job_id=job_id, reason=reason) for r in rows]
    await _update_chunks(conn, updates)


async def _record_transition(
    conn: Any,
    job_id: str,
    from_status: JobStatus | None,
    to_status: JobStatus,
    at: datetime,
    stats: str,
) -> None:
    await conn.execute(
        "INSERT INTO batch_job_transitions (job_id, from_status, to_status, at, stats) "
        "VALUES ($1, $2, $3, $4, $5::jsonb)",
        job_id,
        from_status.value if from_status else None,
        to_status.value,
        at,
        stats,
    )
