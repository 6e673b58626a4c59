"""An exact in-memory copy of the READY vectors, kept in step with the database.

vec0's brute-force KNN reads every vector blob through SQLite and takes 100-180 ms
over 100,000 x 768d; the same vectors as one float32 matrix are scanned by one BLAS
matrix-vector product in about the time memory takes to stream them (the NumPy floor).
So searches run here, and vec0 stays the durable store (and the fallback, with
``memory_index=False``).

Keeping in step, for writes from this store, other connections and other processes
alike: triggers on ``chunks`` append the id of every chunk whose vector may have
changed to ``vector_log`` (see :mod:`.vectors`). Before each search one small query
reads ``MIN(seq), MAX(seq)``; when there is anything past the last ``seq`` applied, the
changed chunks' *current* state is read (vector if READY, else gone) and applied. State,
not operations, is applied, so reading it from a later snapshot than the log is
harmless: anything that changed in between is logged again and re-applied next time.
A committed write is therefore visible to the next search, and a deleted chunk (or one
no longer READY) is dropped before the next search. If the log was pruned past our
``seq`` (we fell more than 65,536 changes behind) or the delta is large, the whole
matrix is reloaded.

The first search loads everything (``sqlite_sequence`` first, then the vec0 rows and the
READY ids; the same argument makes the snapshots' order safe). For a large index the
rows are decoded on a worker thread, batch by batch, so the event loop stays free while
hundreds of megabytes are copied. Large searches run in the same small thread pool
(NumPy releases the GIL); small loads and searches run on the event loop, so a small
database never starts a thread. The matrix is mutated on the event loop only while no
search is running in a thread, and a search is never cancelled mid-product (the thread
finishes, then the next mutation may go ahead). Closing waits for work in flight and
joins the threads.

From :data:`PRUNE_MIN_ROWS` rows a load also fits the pruning basis (:mod:`.pruning`),
so searches skip the rows the bound rules out (still exact). From
:data:`FILE_MIN_ROWS` rows the index is written to its file (:mod:`.index_file`, one
per database and table: the path and the dimensions are all it is told) in the
background after a load and after :data:`_REWRITE_AFTER` changes; an open starts from
the file when it is whole and agrees with the database (log position and entry, READY
count, sampled vectors), then catches up by delta like any sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import numpy as np
import numpy.typing as npt

from asemantic.adapters.sqlite import index_file, pruning
from asemantic.adapters.sqlite.matrix import F32, I64, RowFiller, VectorMatrix, members, unit_rows

__all__ = ["MemoryIndex"]


logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_FETCH = 4096
# Work below this many floats (rows x dimensions) runs inline: a thread hop costs more.
_INLINE_FLOATS = 1 << 19
_MIN_RELOAD_DELTA = 20_000
# Rewrite the index file after this many logged changes (the log keeps 65,536, so a
# later open can still catch up from the file by delta).
_REWRITE_AFTER = 40_000

# Two scalar subqueries: ``SELECT MIN(seq), MAX(seq)`` in one select scans the whole log
# (SQLite's min/max shortcut only applies to a lone aggregate); these are two lookups.
_LOG_BOUNDS = "SELECT (SELECT MIN(seq) FROM vector_log), (SELECT MAX(seq) FROM vector_log)"
_LOG_DELTA = (
    "SELECT (SELECT MIN(seq) FROM vector_log), chunk_id FROM vector_log WHERE seq > ? AND seq <= ?"
)
_LOG_HEAD = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'), 0)"
# Driven from the id list (CROSS JOIN keeps that order): with ``c.id IN (...)`` the
# planner prefers the status index and walks every READY chunk.
_CHANGED = (
    "SELECT c.id, c.document_id, v.embedding FROM json_each(?) j "
    "CROSS JOIN chunks c ON c.id = j.value JOIN vec_chunks v ON v.rowid = c.id "
    "WHERE c.embedding_status = 'READY'"
)
# Both lists in one aggregate, so their entries pair up (each row feeds both).
_READY_IDS = (
    "SELECT COUNT(*), group_concat(id), group_concat(document_id) FROM chunks "
    "WHERE embedding_status = 'READY'"
)
_ALL_VECTORS = "SELECT rowid, embedding FROM vec_chunks"
# vec0's own storage (see :mod:`.matrix`): reading it is about 12x faster than scanning
# vec0 row by row; what it yields is checked against vec0 itself (``_check_sample``).
_SHADOW = (
    "SELECT c.size, c.validity, c.rowids, v.vectors FROM vec_chunks_chunks c "
    "JOIN vec_chunks_vector_chunks00 v ON v.rowid = c.chunk_id"
)
_ONE_VECTOR = "SELECT embedding FROM vec_chunks WHERE rowid = ?"
_SAMPLE = 8
# An index file is checked against the database in one snapshot: how far the log goes,
# where it starts, the chunk logged at the file's position, the READY count and the
# database's id.
_FINGERPRINT = (
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'), 0), "
    "(SELECT MIN(seq) FROM vector_log), (SELECT chunk_id FROM vector_log WHERE seq = ?), "
    "(SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'), "
    "(SELECT value FROM store_meta WHERE key = 'database_id')"
)
_QUIET = (
    "SELECT (SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'), "
    "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'), 0)"
)
_READY_VECTOR = (
    "SELECT v.embedding FROM chunks c JOIN vec_chunks v ON v.rowid = c.id "
    "WHERE c.id = ? AND c.embedding_status = 'READY'"
)
_FILE_SAMPLE = 32
# Index files of more vectors than this (bytes) have them verified in the background
# after opening (a few seconds at a million 768d vectors) instead of before.
VERIFY_LATER_BYTES = 256 << 20
# Pruning and the index file pay off from this many rows (below, a scan is a few ms).
PRUNE_MIN_ROWS = 50_000
FILE_MIN_ROWS = 50_000


def parse_ids(text: object) -> I64:
    """Ids from a ``group_concat`` of integers (None or '' -> none).

    NumPy's text parser, not ``str.split``: one C call that makes no Python object per
    id (about 5x faster, and a worker thread holds the GIL for ~50 ms at 1,000,000 ids
    instead of ~260 ms, which the event loop would wait out)."""
    if not text:
        return np.empty(0, dtype=np.int64)
    source = str(text)
    ids = np.fromstring(source, dtype=np.int64, sep=",")
    if len(ids) != source.count(",") + 1:
        raise ValueError("not a comma-separated list of integers")
    return ids


def _documents(ready_text: object, documents_text: object) -> tuple[I64, I64]:
    """The READY chunk ids and the document of each chunk id (by index)."""
    ready = parse_ids(ready_text)
    document_of = np.zeros(int(ready.max(initial=0)) + 1, dtype=np.int64)
    document_of[ready] = parse_ids(documents_text)
    return ready, document_of


def _assemble(
    dimensions: int, ready: I64, document_of: I64, ids: I64, rows: F32
) -> tuple[VectorMatrix, I64]:
    """A matrix of the loaded rows that are READY, and the READY ids it lacks."""
    keep = members(ids, ready)
    if not keep.all():
        ids, rows = ids[keep], rows[keep]
    fresh = VectorMatrix(dimensions)
    fresh.adopt(ids, rows, document_of[ids])
    return fresh, ready[~members(ready, fresh.ids())]


def _write_sorted(
    path: Path,
    stamp: index_file.Stamp,
    arrays: tuple[I64, I64, F32, F32, F32],
    basis: npt.NDArray[np.float64],
    stop: Callable[[], bool],
) -> bool:
    """Write the index file with its rows in :func:`.pruning.locality_order`."""
    order = pruning.locality_order(arrays[3])
    return index_file.write(path, stamp, arrays, basis, order=order, stop=stop)


class DocumentsByFilter:
    """The document ids recent filters matched, each with the file's
    ``PRAGMA data_version`` when it was read: that number changes whenever another
    connection (this store's writer, another process) commits, so an entry of the
    current version is exactly what the filter's query would return now, and a
    repeated filter is one pragma instead of a scan of the documents. A few entries,
    newest kept."""

    LIMIT = 32

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[int, I64]] = {}
        self.hits = 0

    def get(self, key: tuple[str, str], version: int) -> I64 | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: tuple[str, str], version: int, documents: I64) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self.LIMIT:
            del self._entries[next(iter(self._entries))]
        documents.setflags(write=False)
        self._entries[key] = (version, documents)


class MemoryIndex:
    """The READY vectors of one database as a :class:`VectorMatrix`, kept current.

    ``reader`` is a read-only connection of the store (one statement, one snapshot).
    ``path``: the index file (:mod:`.index_file`) to start from and keep, or None.
    """

    def __init__(
        self, reader: aiosqlite.Connection, dimensions: int, *, path: Path | None = None
    ) -> None:
        self._reader = reader
        self._path = path
        self._file_seq = -1
        self._writing: asyncio.Task[None] | None = None
        self._closing = False
        self._distrusted = False
        self.file_loads = 0
        """How many times the index started from its file (for tests and stats)."""
        self.file_writes = 0
        """How many index files were written."""
        self.corrupt_files = 0
        """How many index files failed the background check of their vectors."""
        self.files_verified = 0
        """How many index files passed it."""
        self._matrix = VectorMatrix(dimensions)
        self._dimensions = dimensions
        self._loaded = False
        self._seq = 0
        self._sync_lock = asyncio.Lock()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="asemantic-search")
        self.reloads = 0
        """How many full loads happened (the first included); for tests and stats."""
        self.filter_documents = DocumentsByFilter()
        """The documents recent filters matched (see :class:`DocumentsByFilter`)."""

    def __len__(self) -> int:
        return len(self._matrix)

    @property
    def nbytes(self) -> int:
        return self._matrix.nbytes

    async def aclose(self) -> None:
        """Wait for work in flight on the worker threads (one product or one batch of a
        load at most), then stop them: after this no thread of the index is left (a
        process may fork safely)."""
        self._closing = True
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        await self._until_idle()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def nearest(
        self, query: F32, k: int, *, documents: I64 | None = None
    ) -> tuple[I64, npt.NDArray[np.float64]]:
        """Chunk ids and cosine distances of the ``k`` nearest READY chunks (of
        ``documents`` if given), nearest first, after catching up with the database."""
        await self.sync()
        matrix = self._matrix
        floats = len(matrix) * self._dimensions
        return await self._off_loop(
            lambda: matrix.search(query, k, documents=documents), inline=floats <= _INLINE_FLOATS
        )

    async def _off_loop(self, work: Callable[[], _T], *, inline: bool) -> _T:
        """``work()`` on a worker thread, or right here when it is small (``inline``):
        a thread hop costs more than small work, and a small database never starts a
        thread at all."""
        if inline:
            return work()
        return await self._in_thread(work)

    async def _in_thread(self, work: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        self._active += 1
        self._idle.clear()

        def finished(_: Future[_T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(self._leave)

        try:
            future = self._pool.submit(work)
        except BaseException:
            self._leave()
            raise
        future.add_done_callback(finished)
        return await asyncio.wrap_future(future)

    def _leave(self) -> None:
        self._active -= 1
        if not self._active:
            self._idle.set()

    async def _until_idle(self) -> None:
        while self._active:
            await self._idle.wait()

    # --- keeping in step --------------------------------------------------------------

    async def sync(self) -> None:
        """Apply every change committed since the last call (load on first use)."""
        async with self._sync_lock:
            if not self._loaded:
                if self._distrusted or not await self._open_file():
                    await self._reload()
                return
            await self._catch_up()
            if self._seq - self._file_seq >= _REWRITE_AFTER:
                self._schedule_write()

    async def _catch_up(self) -> None:
        """Apply the logged changes past ``_seq`` (or reload when the log cannot)."""
        if True:
            bounds = list(await self._reader.execute_fetchall(_LOG_BOUNDS))
            low, high = bounds[0]
            if high is None or int(high) <= self._seq:
                return
            if int(low) > self._seq + 1 or int(high) - self._seq > self._reload_delta():
                await self._reload()
                return
            rows = list(await self._reader.execute_fetchall(_LOG_DELTA, (self._seq, int(high))))
            if not rows or int(rows[0][0]) > self._seq + 1:
                await self._reload()  # pruned under us
                return
            await self._apply(sorted({int(row[1]) for row in rows}))
            self._seq = int(high)

    def _reload_delta(self) -> int:
        return max(_MIN_RELOAD_DELTA, len(self._matrix) // 2)

    async def _apply(self, changed: list[int]) -> None:
        rows = list(await self._reader.execute_fetchall(_CHANGED, (json.dumps(changed),)))
        present = [int(row[0]) for row in rows]
        documents = [int(row[1]) for row in rows]
        vectors = unit_rows(b"".join(bytes(row[2]) for row in rows), self._dimensions)
        gone = sorted(set(changed) - set(present))
        await self._until_idle()
        # No await from here on: no search thread starts while the matrix changes.
        self._matrix.remove(gone)
        self._matrix.upsert(present, vectors, documents)

    async def _reload(self) -> None:
        head = list(await self._reader.execute_fetchall(_LOG_HEAD))
        seq = int(head[0][0])
        ready_rows = list(await self._reader.execute_fetchall(_READY_IDS))
        count, ready_text, documents_text = ready_rows[0]
        inline = int(count) * self._dimensions <= _INLINE_FLOATS
        ready, document_of = await self._off_loop(
            lambda: _documents(ready_text, documents_text), inline=inline
        )
        loaded = await self._read_shadow(capacity=len(ready) + 1024, inline=inline)
        if loaded is None or not await self._check_sample(*loaded):
            logger.info("vec0 storage not as expected; loading vectors row by row")
            loaded = await self._read_vectors(capacity=len(ready) + 1024, inline=inline)
        ids, rows = loaded
        # READY chunks without a vector in that snapshot changed since ``seq`` (the
        # log replays them); reading their state now does no harm either.
        fresh, missing = await self._off_loop(
            lambda: _assemble(self._dimensions, ready, document_of, ids, rows), inline=inline
        )
        if len(missing):
            found = list(
                await self._reader.execute_fetchall(_CHANGED, (json.dumps(missing.tolist()),))
            )
            blob = b"".join(bytes(row[2]) for row in found)
            fresh.upsert(
                [int(row[0]) for row in found],
                unit_rows(blob, self._dimensions),
                [int(row[1]) for row in found],
            )
        if len(fresh) >= PRUNE_MIN_ROWS:
            await self._in_thread(lambda: fresh.prune_with(pruning.fit_basis(fresh.arrays()[2])))
        await self._until_idle()
        self._matrix = fresh
        self._seq = seq
        self._loaded = True
        self.reloads += 1
        logger.debug("memory index loaded")
        self._schedule_write()

    # --- the index file ---------------------------------------------------------------

    async def _open_file(self) -> bool:
        """Start from the index file if it is whole and agrees with the database (see
        :mod:`.index_file`); False (nothing changed) when it cannot be used."""
        path = self._path
        if path is None or not path.exists():
            return False
        later = path.stat().st_size > VERIFY_LATER_BYTES
        loaded = await self._in_thread(
            lambda: index_file.read(path, self._dimensions, check_rows=not later)
        )
        if loaded is None:
            return False
        try:
            used = await self._use_file(loaded)
        except BaseException:
            loaded.close()
            raise
        if used and not loaded.rows_checked and self._matrix.basis is loaded.basis:
            self._start_verifying(loaded)
        else:
            loaded.close()
        return used

    def _start_verifying(self, loaded: index_file.IndexFile) -> None:
        """Check the vectors' checksums on a worker thread (not counted as work on the
        matrix: it reads the file, so writes to the matrix need not wait for it); a
        mismatch makes the next search reload from the database."""
        loop = asyncio.get_running_loop()
        matrix = self._matrix

        def done(future: Future[bool | None]) -> None:
            failed = future.cancelled() or future.exception() is not None
            result = None if failed else future.result()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody searches
                if failed or result is False:
                    loop.call_soon_threadsafe(self._distrust, matrix)
                elif result:
                    loop.call_soon_threadsafe(self._verified)

        self._pool.submit(loaded.rows_intact, self._stopping).add_done_callback(done)

    def _verified(self) -> None:
        self.files_verified += 1

    def _distrust(self, matrix: VectorMatrix) -> None:
        if self._matrix is matrix and self._loaded:
            logger.warning("index file vectors do not match their checksums; reloading")
            self._loaded = False
            self._distrusted = True  # the next load reads the database (and rewrites)
            self.corrupt_files += 1

    async def _use_file(self, loaded: index_file.IndexFile) -> bool:
        """Adopt ``loaded`` if it agrees with the database (then True)."""
        stamp = loaded.stamp
        found = list(await self._reader.execute_fetchall(_FINGERPRINT, (stamp.seq,)))
        head, low, logged, _, database_id = found[0]
        problem = None
        if int(head) < stamp.seq:
            problem = "the database's log is behind the file"
        elif stamp.seq and logged is None and (low is None or int(low) != stamp.seq + 1):
            problem = "the log was pruned past the file"
        elif stamp.seq and logged is not None and int(logged) != stamp.log_chunk:
            problem = "the log differs from the file's"
        elif stamp.database_id is not None and database_id != stamp.database_id:
            problem = "another database"
        if problem is not None:
            logger.info("index file not used: %s; loading from the database", problem)
            return False
        matrix = VectorMatrix(self._dimensions)
        matrix.adopt(loaded.ids, loaded.rows, loaded.documents)
        matrix.prune_with(loaded.basis, loaded.projected, loaded.residuals)
        await self._until_idle()
        self._matrix = matrix
        self._seq = self._file_seq = stamp.seq
        self._loaded = True
        await self._catch_up()
        if self._matrix is matrix and not await self._agrees():
            logger.info("index file disagrees with the database; loading from the database")
            self._loaded = False
            return False
        self.file_loads += 1
        return True

    async def _quiet(self) -> tuple[int, int]:
        """The READY count and the log's head, in one snapshot."""
        found = list(await self._reader.execute_fetchall(_QUIET))
        return int(found[0][0]), int(found[0][1])

    async def _agrees(self) -> bool:
        """Whether the matrix (caught up) has the database's READY count and a sample of
        its vectors, checked while nothing is logged meanwhile."""
        for _ in range(5):
            count, head = await self._quiet()
            if int(head) != self._seq:
                await self._catch_up()
                continue
            if int(count) != len(self._matrix):
                return False
            ids, _, rows, _, _ = self._matrix.arrays()
            picks = np.random.default_rng().choice(len(ids), size=min(_FILE_SAMPLE, len(ids)))
            wanted = [(int(ids[p]), rows[p].copy()) for p in picks.tolist()]
            for chunk_id, row in wanted:
                found = list(await self._reader.execute_fetchall(_READY_VECTOR, (chunk_id,)))
                if not found:
                    break
                expected = unit_rows(bytes(found[0][0]), self._dimensions)[0]
                if not np.allclose(expected, row, atol=1e-6):
                    break
            else:
                later = await self._quiet()
                if int(later[1]) == self._seq:
                    return True
                continue
            later = await self._quiet()
            if int(later[1]) == self._seq:
                return False  # nothing changed meanwhile: the file is wrong
            await self._catch_up()
        return False

    def _stopping(self) -> bool:
        return self._closing

    def _schedule_write(self) -> None:
        """Write the index file in the background (one write at a time)."""
        if self._path is None or self._closing or self._writing is not None:
            return
        if len(self._matrix) < FILE_MIN_ROWS or self._matrix.basis is None:
            return
        self._writing = asyncio.ensure_future(self._write_file(self._path))

    async def _write_file(self, path: Path) -> None:
        try:
            while not self._closing:
                seq = self._seq
                found = list(
                    await self._reader.execute_fetchall(
                        "SELECT (SELECT chunk_id FROM vector_log WHERE seq = ?), "
                        "(SELECT value FROM store_meta WHERE key = 'database_id')",
                        (seq,),
                    )
                )
                if seq != self._seq:
                    continue  # changes applied meanwhile: stamp the newer state
                logged, database_id = found[0]
                stamp = index_file.Stamp(
                    seq=seq,
                    log_chunk=-1 if logged is None else int(logged),
                    database_id=None if database_id is None else str(database_id),
                )
                matrix = self._matrix
                basis = matrix.basis
                if basis is None:
                    return
                # No await between reading the state and the thread taking it: the
                # matrix is only mutated while no thread of the index runs.
                arrays = matrix.arrays()
                written = await self._in_thread(
                    functools.partial(_write_sorted, path, stamp, arrays, basis, self._stopping)
                )
                if written:
                    self._file_seq = seq
                    self.file_writes += 1
                return
        except OSError as error:
            logger.info("index file not written (%s); the next open loads the database", error)
            self._path = None  # a read-only directory: stop trying
        finally:
            self._writing = None

    async def _read_shadow(self, *, capacity: int, inline: bool) -> tuple[I64, F32] | None:
        """Every vector from vec0's shadow tables (one statement, so one snapshot),
        normalised; None if they are not laid out as expected."""
        filler = RowFiller(self._dimensions, capacity)
        try:
            complete = await self._stream(_SHADOW, 16, filler.add_shadow, inline=inline)
        except aiosqlite.Error:
            return None
        return filler.result() if complete else None

    async def _check_sample(self, ids: I64, rows: F32) -> bool:
        """Whether a few rows read from the shadow tables match vec0's own answer."""
        if not len(ids):
            return True
        picks = np.random.default_rng().choice(len(ids), size=min(_SAMPLE, len(ids)))
        for pick in picks.tolist():
            found = list(await self._reader.execute_fetchall(_ONE_VECTOR, (int(ids[pick]),)))
            if not found:
                continue  # deleted since: nothing to compare
            expected = unit_rows(bytes(found[0][0]), self._dimensions)[0]
            if not np.allclose(expected, rows[pick], atol=1e-6):
                return False
        return True

    async def _read_vectors(self, *, capacity: int, inline: bool) -> tuple[I64, F32]:
        """Every vec0 row (one statement, so one snapshot), normalised."""
        filler = RowFiller(self._dimensions, capacity)

        def add(batch: list[Any]) -> bool:
            filler.add_rows(batch)
            return True

        await self._stream(_ALL_VECTORS, _FETCH, add, inline=inline)
        return filler.result()

    async def _stream(
        self, sql: str, size: int, work: Callable[[list[Any]], bool], *, inline: bool
    ) -> bool:
        """Hand the rows of ``sql``, ``size`` at a time, to ``work`` on a worker thread
        (see :meth:`_off_loop`) while the next batch is fetched (the event loop only
        passes batches along); False as soon as ``work`` returns False."""
        async with self._reader.execute(sql) as cursor:
            fetch = asyncio.ensure_future(cursor.fetchmany(size))
            try:
                while batch := list(await fetch):
                    fetch = asyncio.ensure_future(cursor.fetchmany(size))
                    if not await self._off_loop(functools.partial(work, batch), inline=inline):
                        return False
                return True
            finally:
                fetch.cancel()  # a no-op once it is done
