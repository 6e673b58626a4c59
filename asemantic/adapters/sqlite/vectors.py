"""Vectors: the vec0 table, the embedding space it was built for, blob checks, vector
writes and the vector log.

``vec_chunks`` is a sqlite-vec ``vec0`` virtual table whose rowid is ``chunks.id``:
``embedding float[D] distance_metric=cosine``. It is created the first time a space is
known (on open with ``space=...``) and recorded in the one-row ``embedding_space`` table;
a later open with another space is refused, so vectors of two spaces never mix.

Two triggers keep vectors in step with chunks (verified with sqlite-vec 0.1.9: a
trigger on an ordinary table may delete from a vec0 table, and it fires for rows
deleted by an ``ON DELETE CASCADE`` from ``documents`` too):

* ``chunks_vec_delete``: deleting a chunk deletes its vector;
* ``chunks_vec_unready``: a chunk leaving READY loses its vector.

The ``vector_log`` table (``seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id``) records
every chunk whose vector may have changed, so an in-memory copy of the vectors (see
:mod:`.memory_index`) can catch up with writes from any connection or process by reading
the rows past the last ``seq`` it saw. Triggers on ``chunks`` fill it (a trigger cannot
sit on a vec0 table, but a vector only appears, changes or goes together with its chunk
being inserted READY, set READY, leaving READY or deleted; the store keeps it so):

* ``chunks_log_insert``: a chunk inserted READY;
* ``chunks_log_status``: ``embedding_status`` set (to or from READY; re-applying a
  vector sets READY again, so replaced vectors are logged too);
* ``chunks_log_delete``: a READY chunk deleted (cascades included);
* ``vector_log_prune``: every 4,096th entry drops those 65,536 or more behind it. A
  reader that fell further behind sees the gap (its next ``seq`` is gone) and reloads.

``chunk_size``: vec0 keeps vectors in blobs of ``chunk_size`` vectors and rewrites part
of such a blob for every insert; once a blob outgrows the page cache each insert reads
and writes it from disk. With the default (1024) at 3,072 dimensions a blob is 12 MiB
and inserts run about 20x slower than into a plain blob table. :func:`vec_chunk_size`
keeps a blob near 1 MiB (256 vectors at 768 dimensions, 64 at 3,072); the benchmark in
``benchmarks/bench_store.py`` measures the choice. KNN speed hardly depends on it.

Decisions: every blob is checked (:mod:`asemantic.adapters.vectors`) before
anything is written or searched; vectors are written by chunk id (:func:`apply`), and
:func:`integrity_problems` checks that vectors and chunks agree.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence

import aiosqlite

from asemantic.adapters.sqlite.connection import add_once, rollback
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import EmbeddingSpaceMismatchError, StoreError

__all__ = [
    "VECTOR_LOG",
    "VEC_TABLE",
    "apply",
    "check_same_space",
    "create_vec_table",
    "ensure_space",
    "ensure_vector_log",
    "integrity_problems",
    "knn_prefilter_works",
    "read_space",
    "vec_chunk_size",
    "vec_table_sql",
    "write",
]


logger = logging.getLogger(__name__)

VEC_TABLE = "vec_chunks"
VECTOR_LOG = "vector_log"
_TARGET_BLOB_BYTES = 1 << 20
_WRITE_BYTES = 32 << 20
_DIMENSIONS = re.compile(r"float\[(\d+)\]", re.IGNORECASE)

_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS chunks_vec_delete AFTER DELETE ON chunks
    BEGIN DELETE FROM vec_chunks WHERE rowid = OLD.id; END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_vec_unready
    AFTER UPDATE OF embedding_status ON chunks WHEN NEW.embedding_status <> 'READY'
    BEGIN DELETE FROM vec_chunks WHERE rowid = NEW.id; END""",
    """CREATE TABLE IF NOT EXISTS vector_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id INTEGER NOT NULL
)""",
    """CREATE TRIGGER IF NOT EXISTS chunks_log_insert AFTER INSERT ON chunks
    WHEN NEW.embedding_status = 'READY'
    BEGIN INSERT INTO vector_log (chunk_id) VALUES (NEW.id); END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_log_status
    AFTER UPDATE OF embedding_status ON chunks
    WHEN NEW.embedding_status = 'READY' OR OLD.embedding_status = 'READY'
    BEGIN INSERT INTO vector_log (chunk_id) VALUES (NEW.id); END""",
    """CREATE TRIGGER IF NOT EXISTS chunks_log_delete AFTER DELETE ON chunks
    WHEN OLD.embedding_status = 'READY'
    BEGIN INSERT INTO vector_log (chunk_id) VALUES (OLD.id); END""",
    """CREATE TRIGGER IF NOT EXISTS vector_log_prune AFTER INSERT ON vector_log
    WHEN NEW.seq % 4096 = 0
    BEGIN DELETE FROM vector_log WHERE seq <= NEW.seq - 65536; END""",
)


def vec_chunk_size(dimensions: int) -> int:
    """The vec0 ``chunk_size`` for ``dimensions``: a power of two within 8..1024 whose
    vector blob (``chunk_size * dimensions * 4`` bytes) stays at or under 1 MiB."""
    size = 1024
    while size > 8 and size * dimensions * 4 > _TARGET_BLOB_BYTES:
        size //= 2
    return size


def vec_table_sql(dimensions: int, *, chunk_size: int | None = None) -> str:
    size = chunk_size if chunk_size is not None else vec_chunk_size(dimensions)
    return (
        f"CREATE VIRTUAL TABLE {VEC_TABLE} USING vec0("
        f"embedding float[{int(dimensions)}] distance_metric=cosine, chunk_size={int(size)})"
    )


async def vec_table_ddl(conn: aiosqlite.Connection) -> str | None:
    """The ``CREATE`` statement of ``vec_chunks``, or None if there is none."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (VEC_TABLE,)
        )
    )
    return str(rows[0][0]) if rows else None


def dimensions_of(ddl: str) -> int | None:
    match = _DIMENSIONS.search(ddl)
    return int(match.group(1)) if match else None


async def create_vec_table(
    conn: aiosqlite.Connection, dimensions: int, *, chunk_size: int | None = None
) -> None:
    """Create ``vec_chunks`` and its triggers (call inside a transaction)."""
    await conn.execute(vec_table_sql(dimensions, chunk_size=chunk_size))
    await create_vec_triggers(conn)


async def create_vec_triggers(conn: aiosqlite.Connection) -> None:
    for statement in _TRIGGERS:
        await conn.execute(statement)


async def ensure_vector_log(conn: aiosqlite.Connection) -> None:
    """Add ``vector_log`` and its triggers to a file whose vec table predates them
    (a development build of schema version 1). A no-op, read-only check otherwise."""
    if await vec_table_ddl(conn) is not None:
        await add_once(conn, "vector_log_prune", _TRIGGERS)


async def read_space(conn: aiosqlite.Connection) -> EmbeddingSpace | None:
    rows = list(
        await conn.execute_fetchall(
            "SELECT model, dimensions, task_type FROM embedding_space WHERE id = 1"
        )
    )
    if not rows:
        return None
    model, dimensions, task_type = rows[0]
    return EmbeddingSpace(model=str(model), dimensions=int(dimensions), task_type=str(task_type))


async def record_space(conn: aiosqlite.Connection, space: EmbeddingSpace) -> None:
    await conn.execute(
        "INSERT INTO embedding_space (id, model, dimensions, task_type) VALUES (1, ?, ?, ?)",
        (space.model, space.dimensions, space.task_type),
    )


def check_same_space(recorded: EmbeddingSpace, wanted: EmbeddingSpace | None) -> None:
    """:class:`EmbeddingSpaceMismatchError` unless ``wanted`` is None or ``recorded``."""
    if wanted is not None:
        _check_same(recorded, wanted)


def _check_same(recorded: EmbeddingSpace, wanted: EmbeddingSpace) -> None:
    if recorded != wanted:
        raise EmbeddingSpaceMismatchError(
            f"this database holds vectors of {recorded.describe()}, but "
            f"{wanted.describe()} was asked for; vectors of two spaces never mix "
            "(use another database file, open this one with its active space, or "
            "migrate it: asemantic space migrate)"
        )


async def ensure_space(
    conn: aiosqlite.Connection, space: EmbeddingSpace | None
) -> EmbeddingSpace | None:
    """Check ``space`` against the recorded one, recording it (and creating the vec
    table) on first use. Returns the database's space (None if none is known yet)."""
    recorded = await read_space(conn)
    if recorded is not None:
        if space is not None:
            _check_same(recorded, space)
        return recorded
    if space is None:
        return None
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await _record_once(conn, space)
        await conn.execute("COMMIT")
    except BaseException:
        await rollback(conn)
        raise
    return space


async def _record_once(conn: aiosqlite.Connection, space: EmbeddingSpace) -> None:
    """Record ``space`` and create the vec table, unless another process just did."""
    recorded = await read_space(conn)
    if recorded is not None:
        _check_same(recorded, space)
        return
    if await vec_table_ddl(conn) is not None:
        raise StoreError("vec_chunks exists but no embedding space is recorded")
    await record_space(conn, space)
    await create_vec_table(conn, space.dimensions)
    logger.info("embedding space recorded")


_PROBE = (
    "CREATE VIRTUAL TABLE temp.asemantic_knn_probe USING vec0(embedding float[2])",
    "INSERT INTO temp.asemantic_knn_probe (rowid, embedding) "
    "VALUES (1, '[1, 0]'), (2, '[0.9, 0.1]'), (3, '[0, 1]')",
)


async def knn_prefilter_works(conn: aiosqlite.Connection, error: type[Exception]) -> bool:
    """Whether vec0 applies ``rowid IN (...)`` *before* picking the k nearest.

    It does with sqlite-vec 0.1.9 on SQLite >= 3.38 (``sqlite3_vtab_in``); elsewhere
    SQLite could apply the IN to the k rows vec0 returns, and a filtered search would
    come back short. So it is tried on a scratch table in the temp schema: the nearest
    row to (1, 0) among rowid 3 alone must be rowid 3.
    """
    try:
        for statement in _PROBE:
            await conn.execute(statement)
        rows = list(
            await conn.execute_fetchall(
                "SELECT rowid FROM temp.asemantic_knn_probe WHERE embedding MATCH '[1, 0]' "
                "AND k = 1 AND rowid IN (SELECT 3)"
            )
        )
    except error:
        rows = []
    finally:
        await conn.execute("DROP TABLE IF EXISTS temp.asemantic_knn_probe")
    works = [tuple(row) for row in rows] == [(3,)]
    if not works:
        logger.info("vec0 cannot pre-filter KNN by rowid here; filtered searches scan")
    return works


_SELECT_TARGETS = (
    "SELECT json_group_array(id) FROM chunks WHERE id IN (SELECT value FROM json_each(?))"
)
_DELETE_VECTORS = "DELETE FROM vec_chunks WHERE rowid IN (SELECT value FROM json_each(?))"
_INSERT_VECTORS = (
    "INSERT INTO vec_chunks (rowid, embedding) "
    "SELECT value, substr(?2, key * ?3 + 1, ?3) FROM json_each(?1)"
)
_MARK_READY = (
    "UPDATE chunks SET embedding_status = 'READY', error_message = NULL, updated_at = ? "
    "WHERE id IN (SELECT value FROM json_each(?))"
)


async def apply(conn: aiosqlite.Connection, mapping: Mapping[int, bytes], *, now: str) -> int:
    """Store ``mapping``'s vectors and mark their chunks READY (inside a transaction).

    sqlite-vec 0.1.9 refuses ``INSERT OR REPLACE`` on vec0, so a vector is replaced by a
    DELETE and an INSERT (a DELETE of a missing rowid costs about 2 us, so it is done
    for every chunk rather than trusting that only READY chunks have vectors). Chunks
    that no longer exist are skipped. ``error_message`` is cleared; ``batch_job_id`` is
    left as it is.

    Each step is one statement over all the chunks (ids as one JSON array, the vectors
    as one blob that ``substr`` cuts at fixed offsets), not a statement per chunk: the
    work stays inside SQLite, with the GIL released, so a thread parsing the next
    results runs meanwhile instead of taking turns with this one row by row.
    """
    ids = [int(chunk_id) for chunk_id in mapping]
    rows = list(await conn.execute_fetchall(_SELECT_TARGETS, (json.dumps(ids),)))
    existing = set(json.loads(rows[0][0] or "[]")) if rows else set()
    return await write(conn, [i for i in ids if i in existing], mapping, now=now)


async def write(
    conn: aiosqlite.Connection, present: Sequence[int], mapping: Mapping[int, bytes], *, now: str
) -> int:
    """:func:`apply` for chunks this transaction already knows exist: ``present`` (ids of
    ``mapping``, each once) get their vectors and are marked READY."""
    if not present:
        return 0
    width = len(bytes(mapping[present[0]]))  # a memoryview's len counts its items
    # Statements over at most _WRITE_BYTES of vectors: the joined blob is a copy, and
    # SQLite refuses a parameter past SQLITE_MAX_LENGTH (1 GB by default).
    step = max(1, _WRITE_BYTES // max(1, width))
    for start in range(0, len(present), step):
        ids = [int(i) for i in present[start : start + step]]
        blobs = [bytes(mapping[chunk_id]) for chunk_id in ids]
        if any(len(blob) != width for blob in blobs):
            raise StoreError("vectors of one write must all have the same size")
        id_array = json.dumps(ids)
        await conn.execute(_DELETE_VECTORS, (id_array,))
        await conn.execute(_INSERT_VECTORS, (id_array, b"".join(blobs), width))
        await conn.execute(_MARK_READY, (now, id_array))
    return len(present)


async def _scalar(conn: aiosqlite.Connection, sql: str) -> int:
    rows = list(await conn.execute_fetchall(sql))
    return int(rows[0][0])


async def integrity_problems(conn: aiosqlite.Connection, space: EmbeddingSpace | None) -> list[str]:
    """What is wrong with the file, or an empty list."""
    problems = [
        str(row[0])
        for row in await conn.execute_fetchall("PRAGMA integrity_check")
        if str(row[0]) != "ok"
    ]
    fk = list(await conn.execute_fetchall("PRAGMA foreign_key_check"))
    if fk:
        problems.append(f"{len(fk)} rows break foreign keys")
    ready = await _scalar(conn, "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'")
    if space is None:
        if ready:
            problems.append(f"{ready} READY chunks but no vector table")
        return problems
    stray = await _scalar(
        conn,
        "SELECT COUNT(*) FROM vec_chunks WHERE rowid NOT IN "
        "(SELECT id FROM chunks WHERE embedding_status = 'READY')",
    )
    if stray:
        problems.append(f"{stray} vectors belong to no READY chunk")
    vectors = await _scalar(conn, "SELECT COUNT(*) FROM vec_chunks")
    if vectors - stray != ready:
        problems.append(f"{ready - (vectors - stray)} READY chunks have no vector")
    return problems
