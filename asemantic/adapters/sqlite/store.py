"""SqliteStore: documents, chunks and vectors in one SQLite file (aiosqlite + sqlite-vec).

Concurrency inside one process: many asyncio tasks may share a store. It holds two
connections, each with its own aiosqlite thread:

* the *writer*: every write is one ``BEGIN IMMEDIATE`` transaction, and an
  :class:`asyncio.Lock` makes sure no other task's statement runs inside it;
* the *reader* (``query_only``): searches and lookups, one statement each, so each
  reads one committed snapshot. WAL lets it read while a write is in progress.

Search runs on an exact in-memory copy of the READY vectors (:mod:`.memory_index`), kept in
step with every committed write (from any connection or process) before each search;
``memory_index=False`` searches vec0 directly instead. Both give the same hits.

Across processes, ``busy_timeout`` makes a writer wait for another's transaction.

Cancellation: a transaction interrupted by any exception, ``CancelledError`` included,
is rolled back before the write lock is released; the ``ROLLBACK`` is queued on the
writer's thread behind any statement still running, so the next transaction always
starts clean.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite

from asemantic.adapters.checks import check_k, check_terms
from asemantic.adapters.hits import keyword_hits
from asemantic.adapters.planning import check_drafts, dump_json
from asemantic.adapters.sqlite import documents as doc_sql
from asemantic.adapters.sqlite import vectors as vec_sql
from asemantic.adapters.sqlite.connection import (
    DEFAULT_BUSY_TIMEOUT_MS,
    Driver,
    close_quietly,
    insert_usage,
    open_connection,
    rollback,
    select_driver,
    store_error,
    utc_now,
)
from asemantic.adapters.sqlite.index_file import index_path as vector_index_path
from asemantic.adapters.sqlite.jobs import SqliteJobStore
from asemantic.adapters.sqlite.keyword_index import KeywordIndex, keyword_index_rows
from asemantic.adapters.sqlite.keywords import keyword_problems, keyword_sql
from asemantic.adapters.sqlite.memory_index import MemoryIndex
from asemantic.adapters.sqlite.schema import prepare_database
from asemantic.adapters.sqlite.search import (
    build_search,
    hit_from_row,
    index_search,
)
from asemantic.adapters.sqlite.spaces import (
    SqliteSpaces,
    queue_document,
    read_active_space,
    space_integrity_problems,
    space_search,
    with_space_status,
    write_active_vectors,
)
from asemantic.adapters.sqlite.transfer import SqliteTransfer
from asemantic.adapters.vectors import check_blob, check_blobs
from asemantic.domain.documents import EmbeddingStatus, SearchHit
from asemantic.domain.jobs import JobStatus
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import HOME_SPACE_ID
from asemantic.errors import InvalidInputError, StoreClosedError
from asemantic.ports import (
    USAGE_ROUTES,
    ChunkRecord,
    DocumentSnapshot,
    DocumentWrite,
    SearchFilters,
    StoreStats,
    UsageTotal,
    WriteOutcome,
)

__all__ = ["SqliteStore", "utc_now"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_STATS = (
    "SELECT (SELECT COUNT(*) FROM documents), "
    "(SELECT json_group_object(embedding_status, n) FROM "
    "(SELECT embedding_status, COUNT(*) AS n FROM chunks GROUP BY embedding_status)), "
    "(SELECT json_group_object(status, n) FROM "
    "(SELECT status, COUNT(*) AS n FROM batch_jobs GROUP BY status)), "
    "(SELECT json_group_object(route, n) FROM "
    "(SELECT route, COALESCE(SUM(tokens), 0) AS n FROM usage_ledger GROUP BY route))"
)
"""Every count of :meth:`SqliteStore.stats` in one statement: one committed snapshot."""


class SqliteStore:
    """The :class:`~asemantic.ports.Store` on one SQLite file.

    Open with ``store = await SqliteStore.open(path, space=...)`` (or ``async with
    await SqliteStore.open(...) as store``); close with the idempotent :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        path: Path,
        driver: Driver,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        space: EmbeddingSpace | None,
        prefilter: bool,
        memory_index: bool = True,
        home_space: EmbeddingSpace | None = None,
        active_id: int = HOME_SPACE_ID,
        index_file: bool = True,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        """Wrap open connections; use :meth:`open` instead.

        ``space`` is the active space; ``home_space`` space 1's (the chunk table's own
        vectors, ``vec_chunks``), the same unless the file was switched to another.
        """
        self._path = path
        self._driver = driver
        self._busy_timeout_ms = busy_timeout_ms
        self._writer = writer
        self._reader = reader
        self._space = space if home_space is None else home_space
        self._active_id = active_id
        self._active_space = space
        self._spaces: SqliteSpaces | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._prefilter = prefilter
        self._use_index = memory_index
        self._use_file = index_file
        self._index: MemoryIndex | None = None
        self._keywords: KeywordIndex | None = None
        self._jobs = SqliteJobStore(self)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        space: EmbeddingSpace | None = None,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        memory_index: bool = True,
        index_file: bool = True,
    ) -> SqliteStore:
        """Open (creating or upgrading if needed) the database at ``path``.

        ``space`` is recorded on first use; a database of another space raises
        :class:`~asemantic.errors.EmbeddingSpaceMismatchError`. With ``space=None`` the
        recorded space (if any) is used. A database from a newer asemantic raises
        :class:`~asemantic.errors.SchemaVersionError` and is left untouched.

        ``memory_index`` (default on) searches an in-memory float32 copy of the vectors,
        loaded on the first search (about 3 KB per 768d vector); off, every search is a
        vec0 query. Results are the same.

        ``index_file`` (default on) keeps that copy in ``<path>.vectors`` too (for
        50,000 vectors and more), so a later open maps it instead of reading every
        vector from vec0; it is checked against the database before use and rebuilt
        from it on any mismatch (:mod:`.index_file`). A directory that cannot be
        written to just means no file.
        """
        target = Path(os.fspath(path))
        if str(target) in ("", ":memory:"):
            raise InvalidInputError("SqliteStore needs a file path (two connections share it)")
        driver = select_driver()
        writer = await open_connection(target, driver=driver, busy_timeout_ms=busy_timeout_ms)
        try:
            recorded, prefilter, active_id = await prepare_database(writer, driver, space)
            home = await vec_sql.read_space(writer) if active_id != HOME_SPACE_ID else recorded
            reader = await open_connection(
                target, driver=driver, busy_timeout_ms=busy_timeout_ms, query_only=True
            )
        except BaseException:
            await close_quietly(writer)
            raise
        logger.debug("sqlite store opened")
        return cls(
            path=target,
            driver=driver,
            writer=writer,
            reader=reader,
            space=recorded,
            prefilter=prefilter,
            memory_index=memory_index,
            home_space=home,
            active_id=active_id,
            index_file=index_file,
            busy_timeout_ms=busy_timeout_ms,
        )

    # --- life cycle -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def space(self) -> EmbeddingSpace | None:
        """The database's active embedding space (None until one is recorded)."""
        return self._active_space

    @property
    def home_space(self) -> EmbeddingSpace | None:
        """Space 1's: the one ``vec_chunks`` and the chunk columns hold."""
        return self._space

    def adopt_home_space(self, space: EmbeddingSpace) -> None:
        """Follow the file after a copy recorded its first space (space 1, active)."""
        self._space = space
        if self._active_id == HOME_SPACE_ID:
            self._active_space = space

    @property
    def spaces(self) -> SqliteSpaces:
        """The embedding spaces of this file (:mod:`asemantic.domain.spaces`)."""
        if self._spaces is None:
            self._spaces = SqliteSpaces(self)
        return self._spaces

    @property
    def active_space_id(self) -> int:
        """The id of the space searches use (1 unless the file was switched)."""
        return self._active_id

    async def reload_active_space(self) -> EmbeddingSpace | None:
        """Read the active-space pointer again (after a switch); the active space."""
        self._check_open()
        active = await self._guard(read_active_space(self._reader))
        if active is not None:
            self._active_id, self._active_space = active
        return self._active_space

    @property
    def jobs(self) -> SqliteJobStore:
        """The :class:`~asemantic.ports.JobStore` of this database (one per store)."""
        return self._jobs

    @property
    def transfer(self) -> SqliteTransfer:
        """Rows in and out by key, for copying the knowledge base (``asemantic.copy``)."""
        return SqliteTransfer(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        space = self._space.describe() if self._space else None
        return f"SqliteStore({state}, path={str(self._path)!r}, space={space!r})"

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both connections (after the write in progress, if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._keywords is not None:
                await self._keywords.aclose()
            if self._index is not None:
                await self._index.aclose()
        finally:
            await self._close_connections()

    async def _close_connections(self) -> None:
        try:
            async with self._lock:
                await close_quietly(self._writer)
        finally:
            await close_quietly(self._reader)
            logger.debug("sqlite store closed")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    async def _guard(self, work: Awaitable[_T]) -> _T:
        """Run ``work``, translating SQLite errors into :class:`StoreError`."""
        try:
            return await work
        except self._driver.error as exc:
            raise store_error(exc) from exc
        except ValueError as exc:
            if self._closed and "closed" in str(exc).lower():
                raise StoreClosedError("the store was closed during the call") from exc
            raise

    # --- transactions -----------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` on the writer; commit on success, roll back on any error.

        Holds the write lock throughout, so no other task's statement interleaves. The
        connection is in autocommit mode: do not commit or roll back yourself.
        """
        self._check_open()
        async with self._lock:
            self._check_open()
            conn = self._writer
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                await rollback(conn)
                if isinstance(exc, self._driver.error):
                    # A full disk, a lock held too long, a constraint: typed for callers.
                    raise store_error(exc) from exc
                raise

    async def _in_transaction(
        self, work: Callable[[aiosqlite.Connection], Coroutine[Any, Any, _T]]
    ) -> _T:
        async def run() -> _T:
            async with self.transaction() as conn:
                return await work(conn)

        return await self._guard(run())

    # --- documents --------------------------------------------------------------------

    async def get_document(self, source: str) -> DocumentSnapshot | None:
        self._check_open()
        rows = await self._guard(self._reader.execute_fetchall(doc_sql.SELECT_SNAPSHOT, (source,)))
        return doc_sql.snapshot_from_rows(list(rows))

    async def write_document(self, write: DocumentWrite) -> WriteOutcome:
        """Store a document and its chunks in one transaction (see ``DocumentWrite``).

        Counts: ``stored`` new chunk rows, of which ``pending`` are PENDING;
        ``unchanged`` chunks kept; ``removed`` chunks deleted with their vectors. Every
        vector is checked before anything is written.
        """
        self._check_open()
        if not write.document.source:
            raise InvalidInputError("a document needs a non-empty source")
        check_drafts(write.drafts)
        active_id, active_space = self._active_id, self._active_space
        if write.vectors:
            check_blobs(write.vectors.items(), active_space)
        metadata_json = dump_json(dict(write.document.metadata))
        now = utc_now()

        async def work(conn: aiosqlite.Connection) -> WriteOutcome:
            if active_id == HOME_SPACE_ID:
                outcome = await doc_sql.write(conn, write, metadata_json=metadata_json, now=now)
                await queue_document(conn, outcome.document_id, now)
                return outcome
            # The vectors are the active space's: space 1 queues the chunks instead.
            home_write = replace(write, vectors={})
            outcome = await doc_sql.write(conn, home_write, metadata_json=metadata_json, now=now)
            await queue_document(conn, outcome.document_id, now)
            await write_active_vectors(conn, active_id, outcome.document_id, write.vectors, now)
            return outcome

        return await self._in_transaction(work)

    async def delete_document(self, source: str) -> bool:
        """Delete a document, its chunks and their vectors. False if there was none."""
        self._check_open()
        return await self._in_transaction(lambda conn: doc_sql.delete(conn, source))

    # --- vectors ----------------------------------------------------------------------

    async def bulk_update_vectors(self, mapping: Mapping[int, bytes]) -> int:
        """Store vectors by chunk id and mark those chunks READY, in one transaction.

        Idempotent (a chunk keeps exactly one vector); ids of chunks that no longer
        exist are skipped. Returns how many chunks got their vector. Every vector is
        checked before anything is written.
        """
        self._check_open()
        if not mapping:
            return 0
        check_blobs(mapping.items(), self._space)
        return await self._in_transaction(lambda conn: vec_sql.apply(conn, mapping, now=utc_now()))

    async def apply_vectors(
        self, conn: aiosqlite.Connection, mapping: Mapping[int, bytes], *, existing: bool = False
    ) -> int:
        """:meth:`bulk_update_vectors` inside the caller's :meth:`transaction`.

        For callers that write vectors together with other changes (the batch manager
        applies results and job status in one transaction). ``existing``: the caller
        read every chunk of ``mapping`` in this transaction, so none is looked up again.
        """
        if not mapping:
            return 0
        check_blobs(mapping.items(), self._space)
        if existing:
            return await vec_sql.write(conn, list(mapping), mapping, now=utc_now())
        return await vec_sql.apply(conn, mapping, now=utc_now())

    # --- search -----------------------------------------------------------------------

    async def search(
        self, query: bytes, *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` READY chunks nearest to ``query`` (cosine), best first."""
        self._check_open()
        check_k(k)
        if self._active_id != HOME_SPACE_ID:
            blob = check_blob(query, self._active_space, what="query vector")
            return await self._guard(
                space_search(self._reader, self._active_id, blob, k=k, filters=filters)
            )
        blob = check_blob(query, self._space, what="query vector")
        index = self._memory_index()
        if index is not None:
            for _ in range(3):
                hits = await self._guard(index_search(self._reader, index, blob, k, filters))
                if hits is not None:
                    return hits
            logger.warning("memory index kept missing chunks; searching vec0 instead")
        sql, params = build_search(blob, k=k, filters=filters, prefilter=self._prefilter)
        rows = await self._guard(self._reader.execute_fetchall(sql, params))
        return [hit_from_row(row) for row in rows]

    async def keyword_search(
        self, terms: Sequence[str], *, k: int, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """The ``k`` chunks (any embedding status) best matching ``terms`` by BM25
        (FTS5's ``bm25()`` over ``chunk_keywords``)."""
        self._check_open()
        check_k(k)
        wanted = check_terms(terms)
        if not wanted:
            return []
        rows: Sequence[Sequence[object]] | None = None
        index = self._keyword_index()
        if index is not None:
            for _ in range(3):
                rows = await self._guard(
                    keyword_index_rows(self._reader, index, wanted, k, filters)
                )
                if rows is not None or not index.ready:
                    break
            else:
                logger.warning("keyword index kept missing chunks; searching FTS5 instead")
        if rows is None:
            sql, params = keyword_sql(wanted, k=k, filters=filters)
            rows = list(await self._guard(self._reader.execute_fetchall(sql, params)))
        hits = keyword_hits(rows, hit_from_row)
        if self._active_id != HOME_SPACE_ID and hits:
            # The status that matters is the one in the space searches use.
            hits = await self._guard(with_space_status(self._reader, self._active_id, hits))
        return hits

    async def load_keyword_index(self) -> bool:
        """Load the in-memory keyword index now and wait for it (a service may call this
        at start). Otherwise the second keyword or hybrid search starts the load in the
        background, and searches use FTS5 until it is done. True once it is loaded;
        False with ``memory_index=False`` or when the load failed (logged: searches use
        FTS5, and a later one tries again)."""
        self._check_open()
        index = self._keyword_index()
        return False if index is None else await index.loaded()

    def _keyword_index(self) -> KeywordIndex | None:
        """The in-memory BM25 index (with the vector one: ``memory_index=False``
        searches FTS5 with ``bm25()`` directly)."""
        if not self._use_index:
            return None
        if self._keywords is None:
            self._keywords = KeywordIndex(self._reader, self._open_reader)
        return self._keywords

    async def _open_reader(self) -> aiosqlite.Connection:
        """Another read-only connection of this file (the keyword index loads on one)."""
        return await open_connection(
            self._path,
            driver=self._driver,
            busy_timeout_ms=self._busy_timeout_ms,
            query_only=True,
        )

    def _memory_index(self) -> MemoryIndex | None:
        if not self._use_index or self._space is None:
            return None
        if self._index is None:
            path = vector_index_path(self._path) if self._use_file else None
            self._index = MemoryIndex(self._reader, self._space.dimensions, path=path)
        return self._index

    # --- usage ------------------------------------------------------------------------

    async def record_usage(self, route: str, *, texts: int, tokens: int) -> None:
        """Add a line to the usage ledger (``online``, ``batch`` or ``query``)."""
        self._check_open()
        if texts <= 0 and tokens <= 0:
            return
        at = utc_now()
        await self._in_transaction(
            lambda conn: insert_usage(conn, route, texts=texts, tokens=tokens, at=at)
        )

    async def usage_totals(self) -> dict[str, int]:
        """Tokens embedded per route, over the life of the database."""
        rows = await self.fetchall("SELECT route, SUM(tokens) FROM usage_ledger GROUP BY route")
        return {str(route): int(tokens or 0) for route, tokens in rows}

    # --- inspection -------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement on the reader (one committed snapshot).

        For later callers in this package (the job store); the reader is
        ``query_only``, so a write here fails.
        """
        self._check_open()
        rows = await self._guard(self._reader.execute_fetchall(sql, tuple(params)))
        return [tuple(row) for row in rows]

    async def count_chunks_by_status(self) -> dict[str, int]:
        """How many chunks are READY, PENDING and FAILED (every status present)."""
        self._check_open()
        rows = await self._guard(
            self._reader.execute_fetchall(
                "SELECT embedding_status, COUNT(*) FROM chunks GROUP BY embedding_status"
            )
        )
        counts = {status.value: 0 for status in EmbeddingStatus}
        counts.update({str(status): int(n) for status, n in rows})
        return counts

    async def stats(self) -> StoreStats:
        """Documents, chunks and jobs by status, and tokens per route, in one snapshot."""
        rows = await self.fetchall(_STATS)
        documents, chunks, jobs, tokens = rows[0]
        return StoreStats(
            documents=int(documents),
            chunks=_counts(chunks, [status.value for status in EmbeddingStatus]),
            jobs=_counts(jobs, [status.value for status in JobStatus]),
            tokens=_counts(tokens, USAGE_ROUTES),
        )

    async def chunk_records(self) -> list[ChunkRecord]:
        """Every chunk, by chunk id (read-only inspection, one snapshot)."""
        return [_chunk_record(row) for row in await self.fetchall(_CHUNK_RECORDS)]

    async def vector_rows(self) -> list[tuple[int, bytes]]:
        """Every row of ``vec_chunks`` as (chunk id, blob), by chunk id."""
        rows = await self.fetchall("SELECT rowid, embedding FROM vec_chunks ORDER BY rowid")
        return [(int(rowid), bytes(blob)) for rowid, blob in rows]

    async def usage(self) -> dict[str, UsageTotal]:
        """Texts and tokens per route from the usage ledger (every route present)."""
        rows = await self.fetchall(
            "SELECT route, SUM(texts), SUM(tokens) FROM usage_ledger GROUP BY route"
        )
        totals = {route: UsageTotal() for route in USAGE_ROUTES}
        for route, texts, tokens in rows:
            totals[str(route)] = UsageTotal(texts=int(texts or 0), tokens=int(tokens or 0))
        return totals

    async def integrity_check(self) -> str:
        """``"ok"``, or what is wrong: SQLite's own check, foreign keys, and vectors
        (every READY chunk has exactly one vector, no other row has one), and the keyword
        index (one row per chunk)."""
        self._check_open()
        # The keyword check first: it reads chunk_keywords on this connection. Without
        # such a read, the FTS5 part of PRAGMA integrity_check (SQLite 3.44 on; seen
        # with 3.50) can report a sound index "malformed inverted index" once, right
        # after the writer's commit, while a second check and a fresh connection find
        # it sound (tests/robustness/test_cancellation.py met it).
        keywords = await self._guard(keyword_problems(self._reader))
        problems = await self._guard(vec_sql.integrity_problems(self._reader, self._space))
        problems += keywords
        problems += await self._guard(space_integrity_problems(self._reader))
        return "ok" if not problems else "; ".join(problems)


_CHUNK_RECORDS = (
    "SELECT c.id, c.document_id, d.source, d.title, c.position, c.content_hash, "
    "COALESCE(json_extract(c.meta_json, '$._vector_source'), c.text), c.embedding_status, "
    "c.batch_job_id, c.error_message, c.attempts "
    "FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY c.id"
)


def _chunk_record(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=int(row[0]),
        document_id=int(row[1]),
        source=str(row[2]),
        title=row[3],
        position=int(row[4]),
        content_hash=str(row[5]),
        vector_source=str(row[6]),
        status=EmbeddingStatus(row[7]),
        job_id=row[8],
        error_message=row[9],
        attempts=int(row[10]),
    )


def _counts(encoded: str | None, keys: Sequence[str]) -> dict[str, int]:
    """A JSON object of counts, with every one of ``keys`` present (0 when absent)."""
    counts = dict.fromkeys(keys, 0)
    counts.update({str(k): int(v or 0) for k, v in json.loads(encoded or "{}").items()})
    return counts
