"""MemoryJobStore: the :class:`~asemantic.ports.JobStore` of a MemoryStore.

It shares the store's tables and lock (a :class:`~.database.Database`), so what must
change together changes in one all-or-nothing write, as in one SQLite transaction: a
job and the assignment of its chunks; a transition and the release of the job's chunks;
a slice of results' vectors, their chunks' statuses and the usage line.

Decisions:

* Job rows are :class:`~asemantic.ports.JobRecord` values, replaced on each change.
* Results and releases are judged by :mod:`asemantic.adapters.results`, the rules
  every engine shares; vectors are checked before anything is written.
* Job ids and display names are unique, and so are remote names, as the SQLite
  schema's constraints make them: a duplicate raises :class:`~asemantic.errors.StoreError`
  and changes nothing.
* Transitions are compare-and-set only; which moves are allowed is the state
  machine's business (``asemantic.domain.jobs``), not the store's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from asemantic.adapters.memory.database import ChunkRow, Database, Journal, Tables
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
from asemantic.errors import StoreError
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

__all__ = ["MemoryJobStore"]

_LEASE = 1
_TOKEN_LIMIT = "job_token_limit"  # noqa: S105 - a counter's name, not a secret
"""The key of the learned tokens-per-job limit among the database's counters."""


class MemoryJobStore:
    """Batch jobs, their chunks and the supervisor lease of one in-memory database.

    Get it as ``MemoryStore(...).jobs``.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def __repr__(self) -> str:
        return f"MemoryJobStore(database_id={self._db.database_id!r})"

    async def database_id(self) -> str:
        """A random id made once per database (names its remote objects)."""
        return await self._db.read(lambda _: self._db.database_id)

    async def snapshot(self) -> BatchSnapshot:
        """Uncleaned jobs (oldest first), queued chunks and the PENDING count, at once."""

        def work(tables: Tables) -> BatchSnapshot:
            pending = sum(1 for c in tables.chunks.values() if c.status is EmbeddingStatus.PENDING)
            return BatchSnapshot(
                jobs=tuple(_select(tables, None, uncleaned=True)),
                queued=tuple(_queued(tables)),
                pending=pending,
            )

        return await self._db.read(work)

    async def queued_chunks(self) -> list[QueuedChunk]:
        """The PENDING chunks in no job, by id."""
        return await self._db.read(_queued)

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None:
        """A CREATED job holding those of ``chunk_ids`` still queued; None (and no job)
        when none is."""
        now = self._db.now()

        def work(tables: Tables, journal: Journal) -> JobRecord | None:
            if job_id in tables.jobs:
                raise StoreError(f"a batch job with id {job_id!r} exists")
            if any(job.display_name == display_name for job in tables.jobs.values()):
                raise StoreError(f"a batch job named {display_name!r} exists")
            assigned = 0
            for chunk_id in dict.fromkeys(int(i) for i in chunk_ids):
                chunk = tables.chunks.get(chunk_id)
                queued = chunk is not None and chunk.status is EmbeddingStatus.PENDING
                if chunk is None or not queued or chunk.job_id is not None:
                    continue
                journal.put_chunk(replace(chunk, job_id=job_id))
                assigned += 1
            if not assigned:
                return None
            record = JobRecord(
                job_id=job_id,
                display_name=display_name,
                status=JobStatus.CREATED,
                remote_name=None,
                input_file=None,
                output_file=None,
                stats={"sent": assigned},
                error_message=None,
                created_at=now,
                updated_at=now,
                cleaned=False,
            )
            journal.put(tables.jobs, job_id, record)
            tables.add_transition(journal, record, None, now)
            return record

        return await self._db.write(work)

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._db.read(lambda tables: tables.jobs.get(job_id))

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]:
        """Jobs in ``statuses`` (all when None), oldest first; only the uncleaned ones
        with ``uncleaned``."""
        wanted = None if statuses is None else frozenset(JobStatus(s) for s in statuses)
        return await self._db.read(lambda tables: _select(tables, wanted, uncleaned=uncleaned))

    async def job_chunks(self, job_id: str) -> list[JobChunk]:
        """The job's chunks still PENDING, by id, with the text to send."""
        return await self._db.read(lambda tables: _chunks_to_send(tables, job_id, None))

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks, by id."""
        return await self._db.read(
            lambda tables: [(c.chunk_id, c.content_hash) for c in _pending_in(tables, job_id)]
        )

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        """Up to ``limit`` PENDING chunks, queued or in a job, by id, with their text."""
        return await self._db.read(lambda tables: _chunks_to_send(tables, None, limit))

    async def transition_job(self, change: JobChange) -> JobRecord | None:
        """Compare-and-set the job's status (None if it is not in ``change.expected``),
        and release its chunks when ``change.release`` is set."""
        return await self._db.write(lambda tables, journal: _transition(tables, journal, change))

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts:
        """Vectors and chunk statuses of one slice of results, all at once.

        A result counts only for a chunk still PENDING in this job with the same text
        (the hash prefix of its key); anything else is stale and discarded.
        """
        space = self._db.space
        at = self._db.now()
        return await self._db.write(
            lambda tables, journal: _apply_results(
                tables, journal, job_id, results, retry, space, at
            )
        )

    async def mark_cleaned(self, job_id: str) -> None:
        """Record that the job's remote files are gone (it leaves the snapshot)."""
        await self._db.write(lambda tables, journal: _mark_cleaned(tables, journal, job_id))

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None:
        """Record (or, with None, clear) a remote create whose outcome is not known."""

        def work(tables: Tables, journal: Journal) -> None:
            job = tables.jobs.get(job_id)
            if job is not None:
                journal.put(tables.jobs, job_id, replace(job, create_attempted_at=at))

        await self._db.write(work)

    async def note_job(self, note: JobNote) -> JobRecord | None:
        """Stats and input file of a job still in ``note.expected`` (no transition)."""

        def work(tables: Tables, journal: Journal) -> JobRecord | None:
            job = tables.jobs.get(note.job_id)
            if job is None or job.status is not note.expected:
                return None
            input_file = None if note.clear_input_file else _either(note.input_file, job.input_file)
            stats = _int_stats(note.stats) if note.stats is not None else job.stats
            record = replace(job, stats=stats, input_file=input_file)
            journal.put(tables.jobs, job.job_id, record)
            return record

        return await self._db.write(work)

    async def shrink_job(self, job_id: str, *, keep: int) -> int:
        """The chunks of a CREATED job past its first ``keep`` go back to the queue."""

        def work(tables: Tables, journal: Journal) -> int:
            job = tables.jobs.get(job_id)
            if job is None or job.status is not JobStatus.CREATED:
                return 0
            leaving = _pending_in(tables, job_id)[max(0, keep) :]
            for chunk in leaving:
                journal.put_chunk(replace(chunk, job_id=None))
            return len(leaving)

        return await self._db.write(work)

    async def job_token_limit(self) -> int | None:
        return await self._db.read(lambda tables: tables.counters.get(_TOKEN_LIMIT) or None)

    async def set_job_token_limit(self, tokens: int | None) -> None:
        def work(tables: Tables, journal: Journal) -> None:
            if tokens is None:
                journal.drop(tables.counters, _TOKEN_LIMIT)
            else:
                journal.put(tables.counters, _TOKEN_LIMIT, int(tokens))

        await self._db.write(work)

    async def acquire_lease(self, owner: str, *, ttl: float, now: float) -> Lease:
        """Take or renew the supervisor lease unless another live owner holds it."""

        def work(tables: Tables, journal: Journal) -> Lease:
            held = tables.lease.get(_LEASE)
            if held is not None and held.owner != owner and held.expires_at > now:
                return replace(held, acquired=False)
            lease = Lease(owner=owner, expires_at=now + ttl, acquired=True)
            journal.put(tables.lease, _LEASE, lease)
            return lease

        return await self._db.write(work)

    async def release_lease(self, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it."""

        def work(tables: Tables, journal: Journal) -> None:
            held = tables.lease.get(_LEASE)
            if held is not None and held.owner == owner:
                journal.drop(tables.lease, _LEASE)

        await self._db.write(work)

    async def transitions(self, job_id: str) -> list[JobTransition]:
        """The job's recorded transitions, oldest first."""
        return await self._db.read(lambda tables: tables.job_transitions(job_id))

    async def current_lease(self) -> Lease | None:
        """The lease as held (``acquired`` False), or None when nobody holds it."""

        def work(tables: Tables) -> Lease | None:
            held = tables.lease.get(_LEASE)
            return None if held is None else replace(held, acquired=False)

        return await self._db.read(work)


def _queued(tables: Tables) -> list[QueuedChunk]:
    return [
        QueuedChunk(chunk_id=c.chunk_id, size=len(c.vector_source.encode("utf-8")))
        for c in sorted(tables.chunks.values(), key=lambda c: c.chunk_id)
        if c.status is EmbeddingStatus.PENDING and c.job_id is None
    ]


def _select(
    tables: Tables, statuses: frozenset[JobStatus] | None, *, uncleaned: bool
) -> list[JobRecord]:
    chosen = [
        job
        for job in tables.jobs.values()
        if (statuses is None or job.status in statuses) and not (uncleaned and job.cleaned)
    ]
    return sorted(chosen, key=lambda job: (job.created_at, job.job_id))


def _mark_cleaned(tables: Tables, journal: Journal, job_id: str) -> None:
    job = tables.jobs.get(job_id)
    if job is not None:
        journal.put(tables.jobs, job_id, replace(job, cleaned=True))


def _transition(tables: Tables, journal: Journal, change: JobChange) -> JobRecord | None:
    job = tables.jobs.get(change.job_id)
    if job is None or job.status is not change.expected:
        return None
    remote_name = change.remote_name if change.remote_name is not None else job.remote_name
    if remote_name is not None and remote_name != job.remote_name:
        if tables.remote_names.get(remote_name, job.job_id) != job.job_id:
            raise StoreError(f"another batch job has the remote name {remote_name!r}")
        journal.put(tables.remote_names, remote_name, job.job_id)
    record = replace(
        job,
        status=change.to,
        updated_at=change.at,
        stats=_int_stats(change.stats) if change.stats is not None else job.stats,
        remote_name=remote_name,
        input_file=_either(change.input_file, job.input_file),
        output_file=_either(change.output_file, job.output_file),
        error_message=_either(change.error_message, job.error_message),
    )
    journal.put(tables.jobs, job.job_id, record)
    tables.add_transition(journal, record, job.status.value, change.at)
    if change.release is not None:
        for chunk in _pending_in(tables, job.job_id):
            update = release(
                chunk.chunk_id,
                chunk.attempts,
                change.release,
                job_id=job.job_id,
                reason=change.release_reason,
            )
            _put_update(journal, chunk, update)
    return record


def _apply_results(
    tables: Tables,
    journal: Journal,
    job_id: str,
    results: Sequence[LineResult],
    retry: RetryPolicy,
    space: EmbeddingSpace | None,
    at: datetime,
) -> ApplyCounts:
    # Every line is judged against the chunks as they were before this slice: nothing
    # changes until all are judged, and the vectors kept are checked.
    counts = dict.fromkeys(Verdict, 0)
    updates: list[ChunkUpdate] = []
    vectors: dict[int, bytes] = {}
    tokens = 0
    for result in results:
        chunk_id = result_chunk_id(result)
        chunk = tables.chunks.get(chunk_id) if chunk_id is not None else None
        judgement = judge_result(result, _state(chunk), job_id=job_id, retry=retry)
        if judgement.vector is not None and chunk_id is not None:
            vectors[chunk_id] = judgement.vector
            tokens += judgement.tokens
        else:
            counts[judgement.verdict] += 1
            if judgement.update is not None:
                updates.append(judgement.update)
    check_blobs(vectors.items(), space)
    for update in updates:
        _put_update(journal, tables.chunks[update.chunk_id], update)
    for chunk_id, blob in vectors.items():
        chunk = tables.chunks[chunk_id]
        journal.put_chunk(replace(chunk, status=EmbeddingStatus.READY, error_message=None))
        journal.put(tables.vectors, chunk_id, bytes(blob))
    if vectors:
        tables.add_usage(journal, "batch", texts=len(vectors), tokens=tokens, at=at)
    return ApplyCounts(
        ready=len(vectors),
        failed=counts[Verdict.FAILED],
        retried=counts[Verdict.RETRIED],
        stale=counts[Verdict.STALE],
    )


def _state(chunk: ChunkRow | None) -> ChunkState | None:
    if chunk is None:
        return None
    return ChunkState(
        chunk_id=chunk.chunk_id,
        content_hash=chunk.content_hash,
        status=chunk.status,
        job_id=chunk.job_id,
        attempts=chunk.attempts,
        token_estimate=chunk.token_estimate,
    )


def _chunks_to_send(tables: Tables, job_id: str | None, limit: int | None) -> list[JobChunk]:
    """PENDING chunks (of ``job_id``, or all), by id, up to ``limit``, with their text."""
    chunks = sorted(
        (
            c
            for c in tables.chunks.values()
            if c.status is EmbeddingStatus.PENDING and (job_id is None or c.job_id == job_id)
        ),
        key=lambda c: c.chunk_id,
    )
    return [
        JobChunk(
            chunk_id=c.chunk_id,
            content_hash=c.content_hash,
            text=c.vector_source,
            title=tables.documents[c.document_id].title,
            attempts=c.attempts,
        )
        for c in chunks[: limit if limit is not None else len(chunks)]
    ]


def _pending_in(tables: Tables, job_id: str) -> list[ChunkRow]:
    return sorted(
        (
            c
            for c in tables.chunks.values()
            if c.job_id == job_id and c.status is EmbeddingStatus.PENDING
        ),
        key=lambda c: c.chunk_id,
    )


def _put_update(journal: Journal, chunk: ChunkRow, update: ChunkUpdate) -> None:
    journal.put_chunk(
        replace(
            chunk,
            status=update.status,
            error_message=update.error_message,
            attempts=update.attempts,
            job_id=update.job_id,
        )
    )


def _int_stats(stats: Mapping[str, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in stats.items() if isinstance(v, int)}


def _either(new: str | None, old: str | None) -> str | None:
    return new if new is not None else old
