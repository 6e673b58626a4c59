"""PostgresStore: documents, chunks and vectors in one PostgreSQL database (pgvector).

Many processes on many hosts may open the same database at once: every write is one
transaction on a connection of the store's pool, and the rows it touches are its locks
(the document row for a document write, the chunk rows for vectors), so writers of
different documents never wait for each other. Searches read one snapshot each.

Decisions:

* **Open = check, then pool**: one bootstrap connection creates or checks the schema
  (:mod:`.schema`) and the embedding space (:mod:`.vectors`) under an advisory lock,
  then the pool opens (every connection with the vector codec). A database from a newer
  asemantic is refused untouched.
* **The same rules as every engine**: writes are planned by
  :mod:`asemantic.adapters.planning`, vectors checked by :mod:`asemantic.adapters.vectors`
  and ``k`` by :mod:`asemantic.adapters.checks` before anything is sent.
* **Errors are typed** at this edge (:func:`.connection.store_error`); after
  :meth:`PostgresStore.aclose` every call raises :class:`~asemantic.errors.StoreClosedError`.
* ``jobs`` is the :class:`~asemantic.ports.JobStore` of the same database
  (``asemantic.adapters.postgres.jobs.PostgresJobStore(store)``: it runs on this store's
  pool, transactions, closed state and :meth:`PostgresStore.apply_vectors`), imported
  when first asked for and closed before the pool.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from asemantic.adapters.checks import check_k, check_terms
from asemantic.adapters.planning import check_drafts, dump_json
from asemantic.adapters.postgres import documents as doc_sql
from asemantic.adapters.postgres import inspection
from asemantic.adapters.postgres import search as search_sql
from asemantic.adapters.postgres import vectors as vec_sql
from asemantic.adapters.postgres.connection import (
    DEFAULT_POOL_MAX,
    DRIVER_ERRORS,
    Pool,
    open_connection,
    open_pool,
    redact_url,
    store_error,
)
from asemantic.adapters.postgres.keyword_search import run_keyword_search
from asemantic.adapters.postgres.keywords import keyword_problems
from asemantic.adapters.postgres.schema import (
    CURRENT_VERSION,
    ensure_schema_compatibility,
    read_database_id,
    read_version,
)
from asemantic.adapters.vectors import check_blob, check_blobs
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidInputError, StoreClosedError
from asemantic.ports import (
    ChunkRecord,
    DocumentSnapshot,
    DocumentWrite,
    SearchFilters,
    StoreStats,
    UsageTotal,
    WriteOutcome,
)

if TYPE_CHECKING:
    from asemantic.adapters.postgres.jobs import PostgresJobStore
    from asemantic.adapters.postgres.transfer import PostgresTransfer
    from asemantic.ports import JobStore

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class PostgresStore:
    """The :class:`~asemantic.ports.Store` on one PostgreSQL database with pgvector.

    Open with ``store = await PostgresStore.open(url, space=...)``; close with the
    idempotent :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        *,
        url: str,
        pool: Pool,
        space: EmbeddingSpace | None,
        database_id: str,
        exact_limit: int = search_sql.EXACT_LIMIT,
    ) -> None:
        """Wrap an open pool; use :meth:`open` instead."""
        self._url = url
        self._pool = pool
        self._space = space
        self._database_id = database_id
        self._exact_limit = exact_limit
        self._closed = False
        self._jobs: PostgresJobStore | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        space: EmbeddingSpace | None = None,
        min_size: int = 1,
        max_size: int = DEFAULT_POOL_MAX,
        exact_limit: int = search_sql.EXACT_LIMIT,
    ) -> PostgresStore:
        """Open (creating the schema if needed) the database at ``url``.

        ``space`` is recorded on first use; a database of another space raises
        :class:`~asemantic.errors.EmbeddingSpaceMismatchError`; with ``space=None`` the
        recorded space (if any) is used. A newer schema raises
        :class:`~asemantic.errors.SchemaVersionError`; an unreachable server
        :class:`~asemantic.errors.StoreConnectionError`; a refused login
        :class:`~asemantic.errors.StoreAuthenticationError`; a database without
        pgvector that this role cannot add it to
        :class:`~asemantic.errors.VectorExtensionMissingError`.
        """
        conn = await open_connection(url)
        try:
            recorded, database_id = await _prepare(conn, space, url)
        finally:
            await conn.close()
        pool = await open_pool(url, min_size=min_size, max_size=max_size)
        logger.debug("postgres store opened")
        return cls(
            url=url, pool=pool, space=recorded, database_id=database_id, exact_limit=exact_limit
        )

    # --- life cycle -------------------------------------------------------------------

    @property
    def space(self) -> EmbeddingSpace | None:
        """The database's embedding space (None until one is recorded)."""
        return self._space

    @property
    def pool(self) -> Pool:
        """The asyncpg pool (for this package's job store and tools)."""
        return self._pool

    @property
    def database_id(self) -> str:
        return self._database_id

    @property
    def url(self) -> str:
        """The URL the store was opened with (password included: never log it; the
        job store opens its lease connection with it)."""
        return self._url

    @property
    def jobs(self) -> JobStore:
        """The :class:`~asemantic.ports.JobStore` of this database (one per store)."""
        if self._jobs is None:
            from asemantic.adapters.postgres.jobs import PostgresJobStore

            self._jobs = PostgresJobStore(self)
        return self._jobs

    @property
    def transfer(self) -> PostgresTransfer:
        """Rows in and out by key, for copying the knowledge base (``asemantic.copy``)."""
        from asemantic.adapters.postgres.transfer import PostgresTransfer

        return PostgresTransfer(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        space = self._space.describe() if self._space else None
        return f"PostgresStore({state}, url={redact_url(self._url)!r}, space={space!r})"

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool (after the calls in progress). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._jobs is not None:  # first: its lease connection ends its lock at once
                await self._jobs.aclose()
        finally:
            await self._close_pool()

    async def _close_pool(self) -> None:
        try:
            await self._pool.close()
        except Exception:  # adapter edge: the connections are gone either way
            logger.warning("closing the postgres pool failed", exc_info=True)
            self._pool.terminate()
        logger.debug("postgres store closed")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    # --- connections ------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(
        self, *, isolation: str = "read_committed", readonly: bool = False
    ) -> AsyncIterator[Any]:
        """A pooled connection inside one transaction; committed on success, rolled back
        on any error (driver errors leave as typed :class:`StoreError`)."""
        self._check_open()
        try:
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation=isolation, readonly=readonly),
            ):
                yield conn
        except DRIVER_ERRORS as exc:
            if self._closed:
                raise StoreClosedError("the store was closed during the call") from exc
            raise store_error(exc, url=self._url) from exc

    async def _run(
        self,
        work: Callable[[Any], Awaitable[_T]],
        *,
        readonly: bool = False,
        snapshot: bool = False,
    ) -> _T:
        isolation = "repeatable_read" if snapshot else "read_committed"
        async with self.transaction(isolation=isolation, readonly=readonly) as conn:
            return await work(conn)

    async def fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (one snapshot)."""
        rows = await self._run(lambda conn: conn.fetch(sql, *params), readonly=True)
        return [tuple(row) for row in rows]

    # --- documents --------------------------------------------------------------------

    async def get_document(self, source: str) -> DocumentSnapshot | None:
        rows = await self.fetch(doc_sql.SELECT_SNAPSHOT, source)
        return doc_sql.snapshot_from_rows(rows)

    async def write_document(self, write: DocumentWrite) -> WriteOutcome:
        """Store a document and its chunks in one transaction (see ``DocumentWrite``)."""
        self._check_open()
        if not write.document.source:
            raise InvalidInputError("a document needs a non-empty source")
        check_drafts(write.drafts)
        if write.vectors:
            check_blobs(write.vectors.items(), self._space)
        metadata_json = dump_json(dict(write.document.metadata))
        return await self._run(lambda conn: doc_sql.write(conn, write, metadata_json=metadata_json))

    async def delete_document(self, source: str) -> bool:
        """Delete a document, its chunks and their vectors. False if there was none."""
        return await self._run(lambda conn: doc_sql.delete(conn, source))

    # --- vectors ----------------------------------------------------------------------

    async def bulk_update_vectors(self, mapping: Mapping[int, bytes]) -> int:
        """Store vectors by chunk id (COPY) and mark those chunks READY, in one
        transaction. Idempotent; ids of missing chunks are skipped; every vector is
        checked before anything is sent. Returns how many chunks got their vector."""
        self._check_open()
        if not mapping:
            return 0
        check_blobs(mapping.items(), self._space)
        assert self._space is not None  # check_blobs refuses every vector without one
        dimensions = self._space.dimensions
        return await self._run(lambda conn: vec_sql.apply(conn, mapping, dimensions))

    async def apply_vectors(self, conn: Any, mapping: Mapping[int, bytes]) -> int:
        """:meth:`bulk_update_vectors` on the caller's connection, inside its transaction
        (for the job store, which writes results and job changes together)."""
        if not mapping:
            return 0
        check_blobs(mapping.items(), self._space)
        assert self._space is not None
        return await vec_sql.apply(conn, mapping, self._space.dimensions)

    async def create_vector_index(self, *, maintenance_work_mem: str | None = "1GB") -> bool:
        """Build the HNSW index if it is missing (after :meth:`drop_vector_index` and a
        bulk load). False when the space's dimensions allow no index."""
        self._check_open()
        if self._space is None:
            return False
        dimensions = self._space.dimensions
        async with self._pool.acquire() as conn:
            return await vec_sql.create_index(
                conn, dimensions, maintenance_work_mem=maintenance_work_mem
            )

    async def drop_vector_index(self) -> None:
        """Drop the HNSW index (searches are exact until it is built again)."""
        await self._run(vec_sql.drop_index)

    # --- search -----------------------------------------------------------------------

    async def search(
        self, query: bytes, *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` READY chunks nearest to ``query`` (cosine), best first."""
        self._check_open()
        check_k(k)
        blob = check_blob(query, self._space, what="query vector")
        search_sql.filter_conditions(filters, 1)  # refuse a bad filter before any I/O
        assert self._space is not None
        dimensions = self._space.dimensions
        return await self._run(
            lambda conn: search_sql.run_search(
                conn,
                blob,
                k=k,
                filters=filters,
                dimensions=dimensions,
                exact_limit=self._exact_limit,
            ),
            readonly=True,
            snapshot=True,
        )

    async def keyword_search(
        self, terms: Sequence[str], *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks (any embedding status) best matching ``terms`` by BM25,
        computed in SQL (:mod:`.keyword_search`)."""
        self._check_open()
        check_k(k)
        wanted = check_terms(terms)
        search_sql.filter_conditions(filters, 1)  # refuse a bad filter before any I/O
        if not wanted:
            return []
        return await self._run(
            lambda conn: run_keyword_search(conn, wanted, k=k, filters=filters),
            readonly=True,
            snapshot=True,
        )

    # --- usage and inspection ---------------------------------------------------------

    async def record_usage(self, route: str, *, texts: int, tokens: int) -> None:
        """Add a line to the usage ledger (``online``, ``batch`` or ``query``)."""
        self._check_open()
        if texts <= 0 and tokens <= 0:
            return
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO usage_ledger (route, texts, tokens) VALUES ($1, $2, $3)",
                route,
                texts,
                tokens,
            )
        )

    async def count_chunks_by_status(self) -> dict[str, int]:
        """How many chunks are READY, PENDING and FAILED (every status present)."""
        rows = await self.fetch(
            "SELECT embedding_status, count(*) FROM chunks GROUP BY embedding_status"
        )
        counts = {status.value: 0 for status in EmbeddingStatus}
        counts.update({str(status): int(n) for status, n in rows})
        return counts

    async def stats(self) -> StoreStats:
        """Documents, chunks and jobs by status, and tokens per route, in one snapshot."""
        return await self._run(inspection.stats, readonly=True)

    # --- read-only inspection (audits and engine-neutral tests) -----------------------

    async def chunk_records(self) -> list[ChunkRecord]:
        """Every chunk of the database, by chunk id (``ports.ChunkRecord`` values)."""
        return await self._run(inspection.chunk_records, readonly=True)

    async def vector_rows(self) -> list[tuple[int, bytes]]:
        """Every stored vector as (chunk id, float32 blob), by chunk id."""
        if self._space is None:
            return []
        return await self._run(inspection.vector_rows, readonly=True)

    async def usage(self) -> dict[str, UsageTotal]:
        """The usage ledger's totals per route, every route present."""
        return await self._run(inspection.usage, readonly=True)

    async def integrity_check(self) -> str:
        """``"ok"``, or what is wrong: the schema version, and vectors (every READY
        chunk has exactly one, of the space's dimensions; no other chunk has one; the
        index is valid), and the keyword index (one row per chunk). Foreign keys and
        constraints are the server's to keep."""
        space = self._space

        async def work(conn: Any) -> list[str]:
            problems = []
            version = await read_version(conn)
            if version != CURRENT_VERSION:
                problems.append(f"schema version {version}, expected {CURRENT_VERSION}")
            problems += await vec_sql.integrity_problems(conn, space)
            return problems + await keyword_problems(conn)

        problems = await self._run(work, readonly=True, snapshot=True)
        return "ok" if not problems else "; ".join(problems)


async def _prepare(
    conn: Any, space: EmbeddingSpace | None, url: str
) -> tuple[EmbeddingSpace | None, str]:
    try:
        await ensure_schema_compatibility(conn)
        recorded = await vec_sql.ensure_space(conn, space)
        return recorded, await read_database_id(conn)
    except DRIVER_ERRORS as exc:
        raise store_error(exc, url=url) from exc
