"""The state of one in-memory database: its tables, and how a write changes them.

Decisions:

* Every table is a ``dict`` of frozen rows; a row is replaced, never mutated in place.
* A write runs as one synchronous function under the database's :class:`asyncio.Lock`
  with every change going through a :class:`Journal`; if it raises (any exception), the
  journal puts every touched entry back, so the state is as before the write: the
  memory counterpart of a rolled-back transaction. No ``await`` happens inside a
  write, so no other task can see it half done, and a cancellation can only land
  before it starts.
* A read is one synchronous function too, so it sees one consistent state.
* Each call passes one event-loop checkpoint first (``asyncio.sleep(0)``), as an I/O
  store would: a loop of store calls does not starve other tasks, and a cancellation
  lands there, before anything changed.
* Ids come from counters that never go back (SQLite may reuse the largest id after a
  delete; nothing may rely on either).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import StoreClosedError
from asemantic.ports import JobRecord, JobTransition, Lease, TransferTransition, TransferUsage

__all__ = ["ChunkRow", "Database", "DocumentRow", "Journal", "Tables"]

_K = TypeVar("_K")
_V = TypeVar("_V")
_T = TypeVar("_T")
_MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentRow:
    document_id: int
    source: str
    title: str | None
    content_hash: str
    metadata_json: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRow:
    chunk_id: int
    document_id: int
    position: int
    text: str
    meta_json: str
    vector_source: str
    heading_path: tuple[str, ...]
    content_hash: str
    token_estimate: int
    status: EmbeddingStatus
    job_id: str | None = None
    error_message: str | None = None
    attempts: int = 0


@dataclass(slots=True)
class Tables:
    """Every table of one database. ``chunks_of`` indexes chunk ids by document."""

    documents: dict[int, DocumentRow] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    chunks: dict[int, ChunkRow] = field(default_factory=dict)
    chunks_of: dict[int, frozenset[int]] = field(default_factory=dict)
    vectors: dict[int, bytes] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    remote_names: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    """Tokens per route."""
    usage_texts: dict[str, int] = field(default_factory=dict)
    """Texts per route."""
    lease: dict[int, Lease] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    transitions: dict[int, TransferTransition] = field(default_factory=dict)
    """Every job's recorded moves, by transition id (:meth:`job_transitions` reads one job's)."""
    ledger: dict[int, TransferUsage] = field(default_factory=dict)
    """The usage ledger line by line (``usage`` holds its totals per route)."""
    chunk_stamps: dict[int, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    """Created/updated stamps of chunks copied in (others take their document's)."""
    cleaned_at: dict[str, datetime] = field(default_factory=dict)
    generation: int = 0
    """Bumped whenever ``vectors`` may have changed (search caches key on it)."""
    text_generation: int = 0
    """Bumped whenever a chunk's text may have changed, or a chunk came or went (the
    keyword index keys on it)."""
    spaces: dict[int, Any] = field(default_factory=dict)
    """Registered embedding spaces by id (``SpaceRow`` of :mod:`.spaces`; space 1 is
    the store's own, whose state is the chunk rows and ``vectors``)."""
    space_chunks: dict[tuple[int, int], Any] = field(default_factory=dict)
    """(space id, chunk id) -> that chunk's state in a space other than 1."""
    space_vectors: dict[tuple[int, int], bytes] = field(default_factory=dict)
    """(space id, chunk id) -> the chunk's vector in a space other than 1."""
    space_jobs: dict[str, JobRecord] = field(default_factory=dict)
    """Batch jobs of spaces other than 1, by job id."""
    space_job_space: dict[str, int] = field(default_factory=dict)
    """The space of each of ``space_jobs``."""
    space_transitions: dict[int, TransferTransition] = field(default_factory=dict)
    """The recorded moves of ``space_jobs``."""

    def next_id(self, journal: Journal, name: str) -> int:
        value = self.counters.get(name, 0) + 1
        journal.put(self.counters, name, value)
        return value

    def add_usage(
        self, journal: Journal, route: str, *, texts: int, tokens: int, at: datetime
    ) -> None:
        """A usage ledger line, and its route's total."""
        entry_id = self.next_id(journal, "usage")
        line = TransferUsage(entry_id=entry_id, at=at, route=route, texts=texts, tokens=tokens)
        journal.put(self.ledger, entry_id, line)
        journal.put(self.usage, route, self.usage.get(route, 0) + tokens)
        journal.put(self.usage_texts, route, self.usage_texts.get(route, 0) + texts)

    def add_transition(
        self, journal: Journal, job: JobRecord, from_status: str | None, at: datetime
    ) -> None:
        """A line of ``job``'s transition history (to its current status)."""
        transition_id = self.next_id(journal, "transition")
        line = TransferTransition(
            transition_id=transition_id,
            job_id=job.job_id,
            from_status=from_status,
            to_status=job.status.value,
            at=at,
            stats=dict(job.stats),
        )
        journal.put(self.transitions, transition_id, line)

    def job_transitions(self, job_id: str) -> list[JobTransition]:
        """``job_id``'s recorded moves, oldest first."""
        return [
            JobTransition(
                job_id=line.job_id,
                from_status=JobStatus(line.from_status) if line.from_status else None,
                to_status=JobStatus(line.to_status),
                at=line.at if line.at is not None else datetime.min.replace(tzinfo=UTC),
            )
            for _, line in sorted(self.transitions.items())
            if line.job_id == job_id
        ]


class Journal:
    """The changes of one write, so that a failed write can be undone."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._entries: list[tuple[dict[Any, Any], object, object]] = []

    def put(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        self._entries.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def drop(self, table: dict[_K, _V], key: _K) -> None:
        if key in table:
            self._entries.append((table, key, table[key]))
            del table[key]

    def put_chunk(self, chunk: ChunkRow) -> None:
        """Store a chunk row; one that is not READY loses its vector (as SQLite's
        ``chunks_vec_unready`` trigger does)."""
        tables = self._tables
        old = tables.chunks.get(chunk.chunk_id)
        if old is None or old.text != chunk.text:
            tables.text_generation += 1
        if chunk.chunk_id not in tables.chunks:
            owned = tables.chunks_of.get(chunk.document_id, frozenset())
            self.put(tables.chunks_of, chunk.document_id, owned | {chunk.chunk_id})
        self.put(tables.chunks, chunk.chunk_id, chunk)
        if chunk.status is not EmbeddingStatus.READY:
            self.drop(tables.vectors, chunk.chunk_id)

    def drop_chunk(self, chunk_id: int) -> None:
        """Delete a chunk and its vector."""
        tables = self._tables
        chunk = tables.chunks.get(chunk_id)
        if chunk is None:
            return
        tables.text_generation += 1
        owned = tables.chunks_of.get(chunk.document_id, frozenset()) - {chunk_id}
        if owned:
            self.put(tables.chunks_of, chunk.document_id, owned)
        else:
            self.drop(tables.chunks_of, chunk.document_id)
        self.drop(tables.chunks, chunk_id)
        self.drop(tables.vectors, chunk_id)
        for space_id in tables.spaces:  # its rows in other spaces go with it
            self.drop(tables.space_chunks, (space_id, chunk_id))
            self.drop(tables.space_vectors, (space_id, chunk_id))

    def undo(self) -> None:
        for table, key, old in reversed(self._entries):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        self._entries.clear()

    @property
    def touched_vectors(self) -> bool:
        vectors = self._tables.vectors
        return any(table is vectors for table, _, _ in self._entries)


class Database:
    """One in-memory database: the tables, the write lock and the open/closed state."""

    def __init__(self, space: EmbeddingSpace | None) -> None:
        self.space = space
        self.tables = Tables()
        self.database_id = uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self._closed = False
        self._last_stamp = datetime.min.replace(tzinfo=UTC)

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    def now(self) -> datetime:
        """Now in UTC, strictly later than any earlier stamp (so creation order holds)."""
        stamp = datetime.now(UTC)
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = stamp
        return stamp

    async def read(self, work: Callable[[Tables], _T]) -> _T:
        """``work`` over one consistent state."""
        self.check_open()
        await asyncio.sleep(0)
        self.check_open()
        return work(self.tables)

    async def write(self, work: Callable[[Tables, Journal], _T]) -> _T:
        """``work`` as one all-or-nothing write: any exception undoes its changes."""
        self.check_open()
        await asyncio.sleep(0)
        async with self._lock:
            self.check_open()
            journal = Journal(self.tables)
            try:
                result = work(self.tables, journal)
            except BaseException:
                journal.undo()
                self.tables.generation += 1
                self.tables.text_generation += 1
                raise
            if journal.touched_vectors:
                self.tables.generation += 1
            return result

    async def aclose(self) -> None:
        """Refuse every later call (idempotent); waits for a write in progress."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            pass
