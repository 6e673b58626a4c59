"""Several embedding spaces in one in-memory database (see :mod:`asemantic.domain.spaces`).

The same design as the SQLite engine's (:mod:`asemantic.adapters.sqlite.spaces`): space
1 is the database's own (the chunk rows' state, ``Tables.vectors``, ``Tables.jobs``);
every other space keeps its per-chunk state in ``Tables.space_chunks``, its vectors in
``Tables.space_vectors`` and its jobs in ``Tables.space_jobs``, keyed by space. A chunk
deleted takes its rows in every space with it (``Journal.drop_chunk``). Every change is
one all-or-nothing write of the database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from asemantic.adapters.memory.database import Database, Journal, Tables
from asemantic.adapters.memory.jobs import MemoryJobStore
from asemantic.adapters.memory.search import _hit, is_filtered, matching_documents
from asemantic.adapters.results import (
    ChunkState,
    ChunkUpdate,
    Verdict,
    judge_result,
    release,
    result_chunk_id,
)
from asemantic.adapters.vectors import check_blobs
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import (
    HOME_SPACE_ID,
    SpaceChunk,
    SpaceProgress,
    SpaceRecord,
    StoredSpaceState,
)
from asemantic.errors import SpaceError, SpaceIncompleteError, StoreError, UnknownSpaceError
from asemantic.ports import (
    ApplyCounts,
    BatchSnapshot,
    JobChange,
    JobChunk,
    JobNote,
    JobRecord,
    JobStore,
    JobTransition,
    LineResult,
    QueuedChunk,
    SearchFilters,
    TransferTransition,
)

if TYPE_CHECKING:
    from asemantic.adapters.memory.store import MemoryStore

__all__ = [
    "MemorySpaceJobStore",
    "MemorySpaces",
    "SpaceChunkRow",
    "SpaceRow",
    "active_space",
    "queue_document",
    "space_problems",
    "space_search",
    "write_active_vectors",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceRow:
    space_id: int
    space: EmbeddingSpace
    stored: StoredSpaceState
    created_at: datetime
    activated_at: datetime | None = None
    previous_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpaceChunkRow:
    status: EmbeddingStatus = EmbeddingStatus.PENDING
    job_id: str | None = None
    error_message: str | None = None
    attempts: int = 0


def _ensure_home(tables: Tables, journal: Journal, db: Database) -> None:
    if HOME_SPACE_ID not in tables.spaces and db.space is not None:
        now = db.now()
        row = SpaceRow(
            space_id=HOME_SPACE_ID,
            space=db.space,
            stored=StoredSpaceState.ACTIVE,
            created_at=now,
            activated_at=now,
        )
        journal.put(tables.spaces, HOME_SPACE_ID, row)


def active_space(tables: Tables, db: Database) -> tuple[int, EmbeddingSpace | None]:
    """The active space's id and space (space 1, the database's own, until a switch)."""
    for row in tables.spaces.values():
        if row.stored is StoredSpaceState.ACTIVE:
            return int(row.space_id), row.space
    return HOME_SPACE_ID, db.space


def _live(tables: Tables) -> list[int]:
    return sorted(
        sid
        for sid, row in tables.spaces.items()
        if sid != HOME_SPACE_ID and row.stored is not StoredSpaceState.RETIRED
    )


def queue_document(tables: Tables, journal: Journal, document_id: int) -> None:
    """Queue the document's chunks PENDING in every live space other than 1 that has
    no row for them (inside the write)."""
    for space_id in _live(tables):
        for chunk_id in tables.chunks_of.get(document_id, ()):
            if (space_id, chunk_id) not in tables.space_chunks:
                journal.put(tables.space_chunks, (space_id, chunk_id), SpaceChunkRow())


def _set_space_vectors(
    tables: Tables, journal: Journal, space_id: int, mapping: Mapping[int, bytes]
) -> int:
    done = 0
    for chunk_id, blob in mapping.items():
        key = (space_id, int(chunk_id))
        row = tables.space_chunks.get(key)
        if row is None:
            continue
        journal.put(
            tables.space_chunks, key, replace(row, status=EmbeddingStatus.READY, error_message=None)
        )
        journal.put(tables.space_vectors, key, bytes(blob))
        done += 1
    return done


def write_active_vectors(
    tables: Tables,
    journal: Journal,
    space_id: int,
    document_id: int,
    vectors: Mapping[str, bytes],
) -> int:
    """Vectors by content hash for the document's chunks lacking one in ``space_id``."""
    mapping = {}
    for chunk_id in tables.chunks_of.get(document_id, ()):
        row = tables.space_chunks.get((space_id, chunk_id))
        chunk = tables.chunks[chunk_id]
        lacking = row is not None and row.status is not EmbeddingStatus.READY
        if lacking and chunk.content_hash in vectors:
            mapping[chunk_id] = vectors[chunk.content_hash]
    return _set_space_vectors(tables, journal, space_id, mapping)


def space_search(
    tables: Tables,
    space: EmbeddingSpace,
    space_id: int,
    query: bytes,
    k: int,
    filters: SearchFilters | None,
) -> list[SearchHit]:
    """The k READY chunks of ``space_id`` nearest to ``query`` (an exact scan)."""
    documents = None
    if filters is not None and is_filtered(filters):
        documents = matching_documents(tables, filters)
    ids = [
        chunk_id
        for (sid, chunk_id), row in tables.space_chunks.items()
        if sid == space_id
        and row.status is EmbeddingStatus.READY
        and (space_id, chunk_id) in tables.space_vectors
        and (documents is None or tables.chunks[chunk_id].document_id in documents)
    ]
    if not ids:
        return []
    ids.sort()
    rows = (
        np.frombuffer(b"".join(tables.space_vectors[(space_id, i)] for i in ids), dtype="<f4")
        .reshape(-1, space.dimensions)
        .astype(np.float64)
    )
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)
    vector = np.frombuffer(query, dtype="<f4").astype(np.float64)
    vector /= max(float(np.linalg.norm(vector)), 1e-30)
    distances = 1.0 - rows @ vector
    order = np.lexsort((np.asarray(ids), distances))[:k]
    return [_hit(tables, ids[i], float(distances[i])) for i in order]


def space_problems(tables: Tables) -> list[str]:
    """Rows and vectors of spaces other than 1 agree; exactly one space is active."""
    problems: list[str] = []
    if (
        tables.spaces
        and sum(1 for r in tables.spaces.values() if r.stored is StoredSpaceState.ACTIVE) != 1
    ):
        problems.append("not exactly one active embedding space")
    for space_id, row in tables.spaces.items():
        if space_id == HOME_SPACE_ID:
            continue
        keys = {cid for sid, cid in tables.space_chunks if sid == space_id}
        vectors = {cid for sid, cid in tables.space_vectors if sid == space_id}
        if row.stored is StoredSpaceState.RETIRED:
            if keys or vectors:
                problems.append(f"space {space_id} is retired but keeps rows")
            continue
        if keys != set(tables.chunks):
            problems.append(
                f"{len(set(tables.chunks) - keys)} chunks have no row in space {space_id}"
            )
        ready = {
            cid
            for cid in keys
            if tables.space_chunks[(space_id, cid)].status is EmbeddingStatus.READY
        }
        if vectors != ready:
            problems.append(f"vectors of space {space_id} disagree with its READY chunks")
    return problems


class MemorySpaces:
    """The spaces of one in-memory database (``store.spaces``)."""

    def __init__(self, store: MemoryStore, db: Database) -> None:
        self._store = store
        self._db = db
        self._jobs: dict[int, JobStore] = {}

    def __repr__(self) -> str:
        return "MemorySpaces()"

    async def list_spaces(self) -> list[SpaceRecord]:
        return await self._db.read(self._list)

    def _list(self, tables: Tables) -> list[SpaceRecord]:
        rows = dict(tables.spaces)
        if not rows and self._db.space is not None:
            rows[HOME_SPACE_ID] = SpaceRow(
                space_id=HOME_SPACE_ID,
                space=self._db.space,
                stored=StoredSpaceState.ACTIVE,
                created_at=self._db.now(),
            )
        total = len(tables.chunks)
        out = []
        for space_id in sorted(rows):
            row = rows[space_id]
            out.append(
                SpaceRecord(
                    space_id=space_id,
                    space=row.space,
                    stored=row.stored,
                    created_at=row.created_at,
                    activated_at=row.activated_at,
                    previous_id=row.previous_id,
                    progress=_progress(tables, space_id, total),
                )
            )
        return out

    async def get(self, space_id: int) -> SpaceRecord:
        for record in await self.list_spaces():
            if record.space_id == space_id:
                return record
        raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")

    async def migration_inputs(self) -> tuple[int, int]:
        return await self._db.read(
            lambda t: (len(t.chunks), sum(c.token_estimate for c in t.chunks.values()))
        )

    async def register(self, space: EmbeddingSpace) -> SpaceRecord:
        now = self._db.now()

        def work(tables: Tables, journal: Journal) -> int:
            _ensure_home(tables, journal, self._db)
            for row in tables.spaces.values():
                if row.stored is not StoredSpaceState.RETIRED and row.space == space:
                    raise SpaceError(
                        f"space {row.space_id} already is {space.describe()}: nothing to migrate"
                    )
            space_id = max(tables.spaces, default=HOME_SPACE_ID) + 1
            journal.put(
                tables.spaces,
                space_id,
                SpaceRow(
                    space_id=space_id, space=space, stored=StoredSpaceState.STANDBY, created_at=now
                ),
            )
            for chunk_id in tables.chunks:
                journal.put(tables.space_chunks, (space_id, chunk_id), SpaceChunkRow())
            return space_id

        return await self.get(await self._db.write(work))

    async def switch(self, space_id: int, *, force: bool = False) -> SpaceRecord:
        now = self._db.now()

        def work(tables: Tables, journal: Journal) -> None:
            _ensure_home(tables, journal, self._db)
            row = tables.spaces.get(space_id)
            if row is None:
                raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")
            if row.stored is StoredSpaceState.ACTIVE:
                raise SpaceError(f"space {space_id} is already the active space")
            if row.stored is StoredSpaceState.RETIRED:
                raise SpaceError(f"space {space_id} was dropped: its vectors are gone")
            missing = _progress(tables, space_id, len(tables.chunks)).missing
            if missing and not force:
                raise SpaceIncompleteError(
                    f"space {space_id} lacks vectors for {missing} chunk(s); wait for the "
                    "backfill (asemantic space status) or force the switch"
                )
            previous = None
            for other in list(tables.spaces.values()):
                if other.stored is StoredSpaceState.ACTIVE:
                    previous = other.space_id
                    journal.put(
                        tables.spaces,
                        other.space_id,
                        replace(other, stored=StoredSpaceState.STANDBY),
                    )
            journal.put(
                tables.spaces,
                space_id,
                replace(
                    row, stored=StoredSpaceState.ACTIVE, activated_at=now, previous_id=previous
                ),
            )

        await self._db.write(work)
        return await self.get(space_id)

    async def drop(self, space_id: int) -> int:
        def work(tables: Tables, journal: Journal) -> int:
            row = tables.spaces.get(space_id)
            if row is None and not (space_id == HOME_SPACE_ID and self._db.space is not None):
                raise UnknownSpaceError(f"no embedding space {space_id} in this knowledge base")
            if row is None or row.stored is StoredSpaceState.ACTIVE:
                raise SpaceError("the active space cannot be dropped; switch to another first")
            if row.stored is StoredSpaceState.RETIRED:
                raise SpaceError(f"space {space_id} was dropped already")
            if space_id == HOME_SPACE_ID:
                raise SpaceError(
                    "space 1 holds the chunk table's own state and cannot be dropped in "
                    "this version"
                )
            gone = 0
            for key in [k for k in tables.space_chunks if k[0] == space_id]:
                journal.drop(tables.space_chunks, key)
            for key in [k for k in tables.space_vectors if k[0] == space_id]:
                journal.drop(tables.space_vectors, key)
                gone += 1
            journal.put(tables.spaces, space_id, replace(row, stored=StoredSpaceState.RETIRED))
            return gone

        return await self._db.write(work)

    def jobs(self, space_id: int, space: EmbeddingSpace) -> JobStore:
        if space_id == HOME_SPACE_ID:
            return self._store.jobs
        if space_id not in self._jobs:
            self._jobs[space_id] = MemorySpaceJobStore(self._db, space_id, space)
        return self._jobs[space_id]

    async def vector_rows(self, space_id: int) -> list[tuple[int, bytes]]:
        if space_id == HOME_SPACE_ID:
            return await self._store.vector_rows()
        return await self._db.read(
            lambda t: sorted(
                (cid, v) for (sid, cid), v in t.space_vectors.items() if sid == space_id
            )
        )

    async def uncleaned_jobs(self) -> dict[int, int]:
        def work(tables: Tables) -> dict[int, int]:
            out: dict[int, int] = {}
            for job_id, job in tables.space_jobs.items():
                if not job.cleaned:
                    sid = tables.space_job_space[job_id]
                    out[sid] = out.get(sid, 0) + 1
            return out

        return await self._db.read(work)

    async def space_chunks(self, space_id: int) -> list[SpaceChunk]:
        def work(tables: Tables) -> list[SpaceChunk]:
            return [
                SpaceChunk(
                    chunk_id=cid,
                    status=row.status.value,
                    job_id=row.job_id,
                    error_message=row.error_message,
                    attempts=row.attempts,
                )
                for (sid, cid), row in sorted(tables.space_chunks.items())
                if sid == space_id
            ]

        return await self._db.read(work)


def _progress(tables: Tables, space_id: int, total: int) -> SpaceProgress:
    counts = dict.fromkeys(EmbeddingStatus, 0)
    tokens = 0
    if space_id == HOME_SPACE_ID:
        for chunk in tables.chunks.values():
            counts[chunk.status] += 1
            tokens += chunk.token_estimate if chunk.status is EmbeddingStatus.READY else 0
    else:
        for (sid, cid), row in tables.space_chunks.items():
            if sid == space_id:
                counts[row.status] += 1
                if row.status is EmbeddingStatus.READY:
                    tokens += tables.chunks[cid].token_estimate
    return SpaceProgress(
        ready=counts[EmbeddingStatus.READY],
        pending=counts[EmbeddingStatus.PENDING],
        failed=counts[EmbeddingStatus.FAILED],
        total=total,
        tokens_ready=tokens,
    )


class MemorySpaceJobStore(MemoryJobStore):
    """Batch jobs of one space other than 1 (lease and token limit: the database's)."""

    def __init__(self, db: Database, space_id: int, space: EmbeddingSpace) -> None:
        super().__init__(db)
        self._space_id = space_id
        self._space = space

    def __repr__(self) -> str:
        return f"MemorySpaceJobStore(space={self._space_id})"

    async def database_id(self) -> str:
        return f"s{self._space_id}-{await super().database_id()}"

    def _mine(self, tables: Tables) -> list[JobRecord]:
        return sorted(
            (
                j
                for jid, j in tables.space_jobs.items()
                if tables.space_job_space[jid] == self._space_id
            ),
            key=lambda j: (j.created_at, j.job_id),
        )

    def _rows(self, tables: Tables) -> list[tuple[int, SpaceChunkRow]]:
        return sorted(
            (cid, row) for (sid, cid), row in tables.space_chunks.items() if sid == self._space_id
        )

    def _queued(self, tables: Tables) -> list[QueuedChunk]:
        return [
            QueuedChunk(chunk_id=cid, size=len(tables.chunks[cid].vector_source.encode("utf-8")))
            for cid, row in self._rows(tables)
            if row.status is EmbeddingStatus.PENDING and row.job_id is None
        ]

    async def snapshot(self) -> BatchSnapshot:
        def work(tables: Tables) -> BatchSnapshot:
            pending = sum(1 for _, r in self._rows(tables) if r.status is EmbeddingStatus.PENDING)
            return BatchSnapshot(
                jobs=tuple(j for j in self._mine(tables) if not j.cleaned),
                queued=tuple(self._queued(tables)),
                pending=pending,
            )

        return await self._db.read(work)

    async def queued_chunks(self) -> list[QueuedChunk]:
        return await self._db.read(self._queued)

    async def create_job(
        self, *, job_id: str, display_name: str, chunk_ids: Sequence[int]
    ) -> JobRecord | None:
        now = self._db.now()

        def work(tables: Tables, journal: Journal) -> JobRecord | None:
            if job_id in tables.space_jobs or job_id in tables.jobs:
                raise StoreError(f"a batch job with id {job_id!r} exists")
            if any(j.display_name == display_name for j in tables.space_jobs.values()):
                raise StoreError(f"a batch job named {display_name!r} exists")
            assigned = 0
            for chunk_id in dict.fromkeys(int(i) for i in chunk_ids):
                key = (self._space_id, chunk_id)
                row = tables.space_chunks.get(key)
                if row is None or row.status is not EmbeddingStatus.PENDING or row.job_id:
                    continue
                journal.put(tables.space_chunks, key, replace(row, job_id=job_id))
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
            journal.put(tables.space_jobs, job_id, record)
            journal.put(tables.space_job_space, job_id, self._space_id)
            _add_transition(tables, journal, record, None, now)
            return record

        return await self._db.write(work)

    async def get_job(self, job_id: str) -> JobRecord | None:
        def work(tables: Tables) -> JobRecord | None:
            if tables.space_job_space.get(job_id) != self._space_id:
                return None
            return tables.space_jobs.get(job_id)

        return await self._db.read(work)

    async def jobs(
        self, statuses: Collection[JobStatus] | None = None, *, uncleaned: bool = False
    ) -> list[JobRecord]:
        wanted = None if statuses is None else frozenset(JobStatus(s) for s in statuses)
        return await self._db.read(
            lambda t: [
                j
                for j in self._mine(t)
                if (wanted is None or j.status in wanted) and not (uncleaned and j.cleaned)
            ]
        )

    def _send(self, tables: Tables, job_id: str | None, limit: int | None) -> list[JobChunk]:
        chosen = [
            (cid, row)
            for cid, row in self._rows(tables)
            if row.status is EmbeddingStatus.PENDING and (job_id is None or row.job_id == job_id)
        ]
        out = []
        for cid, row in chosen[: limit if limit is not None else len(chosen)]:
            chunk = tables.chunks[cid]
            out.append(
                JobChunk(
                    chunk_id=cid,
                    content_hash=chunk.content_hash,
                    text=chunk.vector_source,
                    title=tables.documents[chunk.document_id].title,
                    attempts=row.attempts,
                )
            )
        return out

    async def job_chunks(self, job_id: str) -> list[JobChunk]:
        return await self._db.read(lambda t: self._send(t, job_id, None))

    async def job_hashes(self, job_id: str) -> list[tuple[int, str]]:
        """``(chunk id, content hash)`` of the job's PENDING chunks in this space, by id."""
        return [(chunk.chunk_id, chunk.content_hash) for chunk in await self.job_chunks(job_id)]

    async def pending_chunks(self, *, limit: int) -> list[JobChunk]:
        return await self._db.read(lambda t: self._send(t, None, max(0, limit)))

    def _put_update(self, tables: Tables, journal: Journal, update: ChunkUpdate) -> None:
        key = (self._space_id, update.chunk_id)
        row = tables.space_chunks[key]
        journal.put(
            tables.space_chunks,
            key,
            replace(
                row,
                status=update.status,
                error_message=update.error_message,
                attempts=update.attempts,
                job_id=update.job_id,
            ),
        )
        if update.status is not EmbeddingStatus.READY:
            journal.drop(tables.space_vectors, key)

    async def transition_job(self, change: JobChange) -> JobRecord | None:
        def work(tables: Tables, journal: Journal) -> JobRecord | None:
            job = tables.space_jobs.get(change.job_id)
            if job is None or job.status is not change.expected:
                return None
            if tables.space_job_space.get(change.job_id) != self._space_id:
                return None
            record = replace(
                job,
                status=change.to,
                updated_at=change.at,
                stats=dict(change.stats) if change.stats is not None else job.stats,
                remote_name=change.remote_name or job.remote_name,
                input_file=change.input_file or job.input_file,
                output_file=change.output_file or job.output_file,
                error_message=change.error_message or job.error_message,
            )
            journal.put(tables.space_jobs, job.job_id, record)
            _add_transition(tables, journal, record, job.status.value, change.at)
            if change.release is not None:
                for cid, row in self._rows(tables):
                    if row.job_id == job.job_id and row.status is EmbeddingStatus.PENDING:
                        update = release(
                            cid,
                            row.attempts,
                            change.release,
                            job_id=job.job_id,
                            reason=change.release_reason,
                        )
                        self._put_update(tables, journal, update)
            return record

        return await self._db.write(work)

    async def apply_results(
        self, job_id: str, results: Sequence[LineResult], *, retry: RetryPolicy
    ) -> ApplyCounts:
        at = self._db.now()

        def work(tables: Tables, journal: Journal) -> ApplyCounts:
            counts = dict.fromkeys(Verdict, 0)
            updates: list[ChunkUpdate] = []
            vectors: dict[int, bytes] = {}
            tokens = 0
            for result in results:
                chunk_id = result_chunk_id(result)
                state = self._state(tables, chunk_id)
                judgement = judge_result(result, state, job_id=job_id, retry=retry)
                if judgement.vector is not None and chunk_id is not None:
                    vectors[chunk_id] = judgement.vector
                    tokens += judgement.tokens
                else:
                    counts[judgement.verdict] += 1
                    if judgement.update is not None:
                        updates.append(judgement.update)
            check_blobs(vectors.items(), self._space)
            for update in updates:
                self._put_update(tables, journal, update)
            ready = _set_space_vectors(tables, journal, self._space_id, vectors)
            if ready:
                tables.add_usage(journal, "batch", texts=ready, tokens=tokens, at=at)
            return ApplyCounts(
                ready=ready,
                failed=counts[Verdict.FAILED],
                retried=counts[Verdict.RETRIED],
                stale=counts[Verdict.STALE],
            )

        return await self._db.write(work)

    def _state(self, tables: Tables, chunk_id: int | None) -> ChunkState | None:
        if chunk_id is None:
            return None
        row = tables.space_chunks.get((self._space_id, chunk_id))
        chunk = tables.chunks.get(chunk_id)
        if row is None or chunk is None:
            return None
        return ChunkState(
            chunk_id=chunk_id,
            content_hash=chunk.content_hash,
            status=row.status,
            job_id=row.job_id,
            attempts=row.attempts,
            token_estimate=chunk.token_estimate,
        )

    async def mark_cleaned(self, job_id: str) -> None:
        def work(tables: Tables, journal: Journal) -> None:
            job = tables.space_jobs.get(job_id)
            if job is not None:
                journal.put(tables.space_jobs, job_id, replace(job, cleaned=True))

        await self._db.write(work)

    async def mark_create_attempt(self, job_id: str, at: datetime | None) -> None:
        def work(tables: Tables, journal: Journal) -> None:
            job = tables.space_jobs.get(job_id)
            if job is not None:
                journal.put(tables.space_jobs, job_id, replace(job, create_attempted_at=at))

        await self._db.write(work)

    async def note_job(self, note: JobNote) -> JobRecord | None:
        def work(tables: Tables, journal: Journal) -> JobRecord | None:
            job = tables.space_jobs.get(note.job_id)
            if job is None or job.status is not note.expected:
                return None
            input_file = None if note.clear_input_file else (note.input_file or job.input_file)
            stats = dict(note.stats) if note.stats is not None else job.stats
            record = replace(job, stats=stats, input_file=input_file)
            journal.put(tables.space_jobs, job.job_id, record)
            return record

        return await self._db.write(work)

    async def shrink_job(self, job_id: str, *, keep: int) -> int:
        def work(tables: Tables, journal: Journal) -> int:
            job = tables.space_jobs.get(job_id)
            if job is None or job.status is not JobStatus.CREATED:
                return 0
            inside = [
                cid
                for cid, row in self._rows(tables)
                if row.job_id == job_id and row.status is EmbeddingStatus.PENDING
            ]
            leaving = inside[max(0, keep) :]
            for cid in leaving:
                key = (self._space_id, cid)
                journal.put(
                    tables.space_chunks, key, replace(tables.space_chunks[key], job_id=None)
                )
            return len(leaving)

        return await self._db.write(work)

    async def transitions(self, job_id: str) -> list[JobTransition]:
        def work(tables: Tables) -> list[JobTransition]:
            return [
                JobTransition(
                    job_id=line.job_id,
                    from_status=JobStatus(line.from_status) if line.from_status else None,
                    to_status=JobStatus(line.to_status),
                    at=line.at if line.at is not None else datetime.min,
                )
                for _, line in sorted(tables.space_transitions.items())
                if line.job_id == job_id
            ]

        return await self._db.read(work)


def _add_transition(
    tables: Tables, journal: Journal, job: JobRecord, from_status: str | None, at: datetime
) -> None:
    transition_id = tables.next_id(journal, "space_transition")
    line = TransferTransition(
        transition_id=transition_id,
        job_id=job.job_id,
        from_status=from_status,
        to_status=job.status.value,
        at=at,
        stats=dict(job.stats),
    )
    journal.put(tables.space_transitions, transition_id, line)
