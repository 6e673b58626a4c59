"""MemoryStore: the :class:`~asemantic.ports.Store` held in memory, for tests and demos.

It keeps the SQLite store's semantics (the contract suite in ``tests/ports`` runs the
same tests over both): content-hash reuse on rewrite (:mod:`asemantic.adapters.planning`),
every vector checked before anything is written (:mod:`asemantic.adapters.checks`),
exact cosine search with ties by chunk id, ``k`` hits whenever ``k`` chunks match a
filter, :class:`~asemantic.errors.StoreClosedError` after :meth:`MemoryStore.aclose`.

Decisions:

* Nothing is persisted: the database lives as long as the object. Its ``jobs`` (a
  :class:`~asemantic.adapters.memory.jobs.MemoryJobStore`) share its tables and lock.
* The embedding space is fixed at construction. Without one, the store keeps documents
  and PENDING chunks but refuses every vector, as a SQLite file opened without a space
  does (a blob alone does not say which model made it).
* Writes are all-or-nothing (see :mod:`.database`); a usage route other than
  ``online``, ``batch`` or ``query`` is refused with :class:`~asemantic.errors.StoreError`
  as the SQLite ledger's CHECK constraint refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType

from asemantic.adapters.checks import check_k, check_terms
from asemantic.adapters.memory.database import ChunkRow, Database, DocumentRow, Journal, Tables
from asemantic.adapters.memory.jobs import MemoryJobStore
from asemantic.adapters.memory.keywords import KeywordIndex
from asemantic.adapters.memory.search import (
    VectorIndex,
    _hit,
    check_filters,
    is_filtered,
    matching_documents,
)
from asemantic.adapters.memory.spaces import (
    MemorySpaces,
    active_space,
    queue_document,
    space_problems,
    space_search,
    write_active_vectors,
)
from asemantic.adapters.memory.transfer import MemoryTransfer
from asemantic.adapters.planning import (
    ExistingChunk,
    WritePlan,
    check_drafts,
    dump_json,
    plan_write,
)
from asemantic.adapters.vectors import check_blob, check_blobs
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.jobs import JobStatus
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import HOME_SPACE_ID
from asemantic.errors import InvalidInputError, StoreError
from asemantic.ports import (
    USAGE_ROUTES,
    ChunkRecord,
    DocumentSnapshot,
    DocumentWrite,
    SearchFilters,
    StoredChunk,
    StoreStats,
    UsageTotal,
    WriteOutcome,
)

__all__ = ["MemoryStore"]

logger = logging.getLogger(__name__)

"""The routes of the usage ledger."""


class MemoryStore:
    """The :class:`~asemantic.ports.Store` in memory: ``MemoryStore(space=...)``.

    No I/O happens anywhere; close with the idempotent :meth:`aclose` (or ``async
    with``), after which every call raises :class:`~asemantic.errors.StoreClosedError`.
    """

    def __init__(self, *, space: EmbeddingSpace | None = None) -> None:
        self._db = Database(space)
        self._jobs = MemoryJobStore(self._db)
        self._index = VectorIndex(space.dimensions) if space is not None else None
        self._keywords = KeywordIndex()
        self._spaces = MemorySpaces(self, self._db)

    # --- life cycle -------------------------------------------------------------------

    @property
    def space(self) -> EmbeddingSpace | None:
        """The active embedding space of this store (None: vectors are refused)."""
        return active_space(self._db.tables, self._db)[1]

    @property
    def home_space(self) -> EmbeddingSpace | None:
        """Space 1's: the one the chunk rows and ``vectors`` hold."""
        return self._db.space

    @property
    def spaces(self) -> MemorySpaces:
        """The embedding spaces of this database (:mod:`asemantic.domain.spaces`)."""
        return self._spaces

    @property
    def active_space_id(self) -> int:
        """The id of the space searches use (1 unless switched)."""
        return active_space(self._db.tables, self._db)[0]

    async def reload_active_space(self) -> EmbeddingSpace | None:
        """The active space (in memory, always current)."""
        return await self._db.read(lambda tables: active_space(tables, self._db)[1])

    @property
    def jobs(self) -> MemoryJobStore:
        """The batch jobs of the same database."""
        return self._jobs

    @property
    def transfer(self) -> MemoryTransfer:
        """Rows in and out by key, for copying the knowledge base (``asemantic.copy``)."""
        return MemoryTransfer(self)

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __repr__(self) -> str:
        state = "closed" if self._db.closed else "open"
        space = self._db.space.describe() if self._db.space else None
        return f"MemoryStore({state}, space={space!r})"

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse every later call. Idempotent."""
        await self._db.aclose()
        logger.debug("memory store closed")

    # --- documents --------------------------------------------------------------------

    async def get_document(self, source: str) -> DocumentSnapshot | None:
        return await self._db.read(lambda tables: _snapshot(tables, source))

    async def write_document(self, write: DocumentWrite) -> WriteOutcome:
        """Store a document and its chunks all at once (see ``DocumentWrite``).

        Counts: ``stored`` new chunks, of which ``pending`` are PENDING; ``unchanged``
        chunks kept; ``removed`` chunks deleted with their vectors. Every vector is
        checked before anything is written.
        """
        self._db.check_open()
        if not write.document.source:
            raise InvalidInputError("a document needs a non-empty source")
        check_drafts(write.drafts)
        active_id, active = active_space(self._db.tables, self._db)
        if write.vectors:
            check_blobs(write.vectors.items(), active)
        metadata_json = dump_json(dict(write.document.metadata))
        now = self._db.now()
        home = write.vectors if active_id == HOME_SPACE_ID else {}

        def work(tables: Tables, journal: Journal) -> WriteOutcome:
            if active_space(tables, self._db)[0] != active_id:
                raise StoreError("the active space changed during the write; try again")
            document_id = _upsert(tables, journal, write, metadata_json, now=now)
            plan = plan_write(_existing(tables, document_id), write.drafts, home)
            _apply(tables, journal, plan, document_id=document_id)
            queue_document(tables, journal, document_id)
            if active_id != HOME_SPACE_ID:
                write_active_vectors(tables, journal, active_id, document_id, write.vectors)
            return WriteOutcome(
                document_id=document_id,
                stored=len(plan.new),
                unchanged=len(plan.kept),
                removed=len(plan.delete_ids),
                pending=plan.pending,
            )

        return await self._db.write(work)

    async def delete_document(self, source: str) -> bool:
        """Delete a document, its chunks and their vectors. False if there was none."""

        def work(tables: Tables, journal: Journal) -> bool:
            document_id = tables.sources.get(source)
            if document_id is None:
                return False
            for chunk_id in sorted(tables.chunks_of.get(document_id, ())):
                journal.drop_chunk(chunk_id)
            journal.drop(tables.documents, document_id)
            journal.drop(tables.sources, source)
            return True

        return await self._db.write(work)

    # --- vectors ----------------------------------------------------------------------

    async def bulk_update_vectors(self, mapping: Mapping[int, bytes]) -> int:
        """Store vectors by chunk id and mark those chunks READY, all at once.

        Idempotent (a chunk keeps exactly one vector); ids of chunks that do not exist
        are skipped. Returns how many chunks got their vector. Every vector is checked
        before anything is written.
        """
        self._db.check_open()
        if not mapping:
            return 0
        check_blobs(mapping.items(), self._db.space)
        return await self._db.write(lambda tables, journal: _set_vectors(tables, journal, mapping))

    # --- search -----------------------------------------------------------------------

    async def search(
        self, query: bytes, *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` READY chunks nearest to ``query`` (cosine), best first."""
        self._db.check_open()
        check_k(k)
        active_id, active = active_space(self._db.tables, self._db)
        blob = check_blob(query, active, what="query vector")
        check_filters(filters)
        if active_id != HOME_SPACE_ID and active is not None:
            space = active
            return await self._db.read(
                lambda tables: space_search(tables, space, active_id, blob, k, filters)
            )
        index = self._index
        if index is None:  # no space: no vector can be stored (check_blob refused above)
            return []

        def work(tables: Tables) -> list[SearchHit]:
            documents = None
            if filters is not None and is_filtered(filters):
                documents = matching_documents(tables, filters)
                if not documents:
                    return []
            return index.search(tables, blob, k, documents)

        return await self._db.read(work)

    async def keyword_search(
        self, terms: Sequence[str], *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks (any embedding status) best matching ``terms`` by BM25."""
        self._db.check_open()
        check_k(k)
        check_filters(filters)
        wanted = check_terms(terms)
        keywords = self._keywords

        def work(tables: Tables) -> list[SearchHit]:
            active_id = active_space(tables, self._db)[0]
            documents = None
            if filters is not None and is_filtered(filters):
                documents = matching_documents(tables, filters)
                if not documents:
                    return []
            found = keywords.search(tables, wanted, k, documents)
            return [
                replace(
                    _hit(tables, chunk_id, 0.0),
                    distance=None,
                    score=score,
                    keyword_score=score,
                    keyword_rank=rank,
                    embedding_status=_status_in(tables, active_id, chunk_id),
                )
                for rank, (chunk_id, score) in enumerate(found, 1)
            ]

        return await self._db.read(work)

    # --- usage and inspection ---------------------------------------------------------

    async def record_usage(self, route: str, *, texts: int, tokens: int) -> None:
        """Add to the usage ledger (``online``, ``batch`` or ``query``)."""
        self._db.check_open()
        if texts <= 0 and tokens <= 0:
            return
        if route not in USAGE_ROUTES:
            raise StoreError(f"unknown usage route {route!r}; routes are {USAGE_ROUTES}")
        at = self._db.now()
        await self._db.write(
            lambda tables, journal: tables.add_usage(
                journal, route, texts=texts, tokens=tokens, at=at
            )
        )

    async def count_chunks_by_status(self) -> dict[str, int]:
        """How many chunks are READY, PENDING and FAILED (every status present)."""
        return await self._db.read(_count_chunks)

    async def stats(self) -> StoreStats:
        """Documents, chunks by status, jobs by status and tokens per route, at once."""

        def work(tables: Tables) -> StoreStats:
            jobs = {status.value: 0 for status in JobStatus}
            for job in tables.jobs.values():
                jobs[job.status.value] += 1
            tokens = dict.fromkeys(USAGE_ROUTES, 0)
            tokens.update(tables.usage)
            return StoreStats(
                documents=len(tables.documents),
                chunks=_count_chunks(tables),
                jobs=jobs,
                tokens=tokens,
            )

        return await self._db.read(work)

    async def chunk_records(self) -> list[ChunkRecord]:
        """Every chunk, by chunk id (read-only inspection)."""
        return await self._db.read(_chunk_records)

    async def vector_rows(self) -> list[tuple[int, bytes]]:
        """Every stored vector as (chunk id, blob), by chunk id."""
        return await self._db.read(lambda tables: sorted(tables.vectors.items()))

    async def usage(self) -> dict[str, UsageTotal]:
        """Texts and tokens per route (every route present)."""
        return await self._db.read(_usage)

    async def integrity_check(self) -> str:
        """``"ok"``, or the broken invariants: every READY chunk has exactly one vector
        and no other chunk has one; every chunk's document and job exist."""
        problems = await self._db.read(lambda tables: _problems(tables) + space_problems(tables))
        return "ok" if not problems else "; ".join(problems)


def _set_vectors(tables: Tables, journal: Journal, mapping: Mapping[int, bytes]) -> int:
    """Store checked vectors by chunk id, making those chunks READY (inside a write)."""
    done = 0
    for key, blob in mapping.items():
        chunk = tables.chunks.get(int(key))
        if chunk is None:
            continue
        journal.put_chunk(replace(chunk, status=EmbeddingStatus.READY, error_message=None))
        journal.put(tables.vectors, chunk.chunk_id, bytes(blob))
        done += 1
    return done


def _chunk_records(tables: Tables) -> list[ChunkRecord]:
    records = []
    for chunk_id in sorted(tables.chunks):
        chunk = tables.chunks[chunk_id]
        document = tables.documents[chunk.document_id]
        records.append(
            ChunkRecord(
                chunk_id=chunk.chunk_id,
                document_id=chunk.document_id,
                source=document.source,
                title=document.title,
                position=chunk.position,
                content_hash=chunk.content_hash,
                vector_source=chunk.vector_source,
                status=chunk.status,
                job_id=chunk.job_id,
                error_message=chunk.error_message,
                attempts=chunk.attempts,
            )
        )
    return records


def _usage(tables: Tables) -> dict[str, UsageTotal]:
    return {
        route: UsageTotal(texts=tables.usage_texts.get(route, 0), tokens=tables.usage.get(route, 0))
        for route in USAGE_ROUTES
    }


def _snapshot(tables: Tables, source: str) -> DocumentSnapshot | None:
    document_id = tables.sources.get(source)
    if document_id is None:
        return None
    document = tables.documents[document_id]
    rows = sorted(
        (tables.chunks[i] for i in tables.chunks_of.get(document_id, ())),
        key=lambda c: (c.position, c.chunk_id),
    )
    return DocumentSnapshot(
        document_id=document_id,
        source=document.source,
        content_hash=document.content_hash,
        chunks=tuple(
            StoredChunk(
                chunk_id=c.chunk_id,
                position=c.position,
                content_hash=c.content_hash,
                status=c.status,
            )
            for c in rows
        ),
    )


def _upsert(
    tables: Tables, journal: Journal, write: DocumentWrite, metadata_json: str, *, now: datetime
) -> int:
    document = write.document
    document_id = tables.sources.get(document.source)
    previous = tables.documents.get(document_id) if document_id is not None else None
    if document_id is None:
        document_id = tables.next_id(journal, "document")
        journal.put(tables.sources, document.source, document_id)
    journal.put(
        tables.documents,
        document_id,
        DocumentRow(
            document_id=document_id,
            source=document.source,
            title=document.title,
            content_hash=write.content_hash,
            metadata_json=metadata_json,
            created_at=previous.created_at if previous is not None else now,
            updated_at=now,
        ),
    )
    return document_id


def _existing(tables: Tables, document_id: int) -> list[ExistingChunk]:
    return [
        ExistingChunk(
            chunk_id=c.chunk_id,
            position=c.position,
            content_hash=c.content_hash,
            status=c.status.value,
            text=c.text,
            meta_json=c.meta_json,
        )
        for c in (tables.chunks[i] for i in sorted(tables.chunks_of.get(document_id, ())))
    ]


def _apply(tables: Tables, journal: Journal, plan: WritePlan, *, document_id: int) -> None:
    for chunk_id in plan.delete_ids:
        journal.drop_chunk(chunk_id)
    for kept in plan.updates:
        draft = kept.draft
        journal.put_chunk(
            replace(
                tables.chunks[kept.chunk_id],
                position=draft.position,
                text=draft.text,
                meta_json=kept.meta_json,
                vector_source=draft.vector_source,
                heading_path=tuple(draft.heading_path),
                token_estimate=int(draft.token_estimate),
            )
        )
    for new in plan.new:
        draft = new.draft
        chunk_id = tables.next_id(journal, "chunk")
        journal.put_chunk(
            ChunkRow(
                chunk_id=chunk_id,
                document_id=document_id,
                position=draft.position,
                text=draft.text,
                meta_json=new.meta_json,
                vector_source=draft.vector_source,
                heading_path=tuple(draft.heading_path),
                content_hash=draft.content_hash,
                token_estimate=int(draft.token_estimate),
                status=EmbeddingStatus(new.status),
            )
        )
        if new.vector is not None:
            journal.put(tables.vectors, chunk_id, bytes(new.vector))
        elif new.copy_vector_of is not None:
            journal.put(tables.vectors, chunk_id, tables.vectors[new.copy_vector_of])


def _count_chunks(tables: Tables) -> dict[str, int]:
    counts = {status.value: 0 for status in EmbeddingStatus}
    for chunk in tables.chunks.values():
        counts[chunk.status.value] += 1
    return counts


def _problems(tables: Tables) -> list[str]:
    problems: list[str] = []
    ready = {i for i, c in tables.chunks.items() if c.status is EmbeddingStatus.READY}
    missing = len(ready - tables.vectors.keys())
    if missing:
        problems.append(f"{missing} READY chunks have no vector")
    stray = len(tables.vectors.keys() - ready)
    if stray:
        problems.append(f"{stray} vectors belong to no READY chunk")
    orphans = sum(1 for c in tables.chunks.values() if c.document_id not in tables.documents)
    if orphans:
        problems.append(f"{orphans} chunks belong to no document")
    unknown = sum(
        1 for c in tables.chunks.values() if c.job_id is not None and c.job_id not in tables.jobs
    )
    if unknown:
        problems.append(f"{unknown} chunks reference a missing job")
    return problems


def _status_in(tables: Tables, space_id: int, chunk_id: int) -> EmbeddingStatus:
    """The chunk's embedding status in space ``space_id`` (the one searches use)."""
    if space_id == HOME_SPACE_ID:
        return tables.chunks[chunk_id].status
    row = tables.space_chunks.get((space_id, chunk_id))
    return EmbeddingStatus.PENDING if row is None else row.status
