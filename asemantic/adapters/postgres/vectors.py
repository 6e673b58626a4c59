"""Vectors: the embedding space, ``chunk_vectors`` and its HNSW index, vector writes and
the integrity checks.

``chunk_vectors(chunk_id bigint primary key references chunks on delete cascade,
embedding vector(D))`` is created the first time a space is known (on open with
``space=...``), with the space recorded in the one-row ``embedding_space`` table; a later
open with another space raises :class:`~asemantic.errors.EmbeddingSpaceMismatchError`,
so vectors of two spaces never mix. The trigger ``chunks_vector_unready`` deletes a
chunk's vector when the chunk leaves READY; ``ON DELETE CASCADE`` deletes it with the
chunk.

Decisions:

* **One HNSW index, cosine** (``vector_cosine_ops``, pgvector's defaults ``m = 16,
  ef_construction = 64``), named :data:`INDEX`. pgvector indexes ``vector`` up to 2,000
  dimensions, so a larger space (Gemini's 3,072) indexes ``embedding::halfvec(D)`` with
  ``halfvec_cosine_ops`` (up to 4,000; candidates are re-ranked by the full-precision
  distance); above 4,000 there is no index and every search is exact.
* **The index is made with the table** (inserts then keep it current). A bulk import
  can drop it and build it once afterwards (:func:`drop_index`, :func:`create_index`,
  with a larger ``maintenance_work_mem``): a build from scratch is several times faster
  than as many inserts into the graph.
* **Vectors arrive by COPY** (:func:`apply`): the binary COPY fills a temporary table
  (kept per connection, emptied at commit), then one statement marks the chunks READY
  and upserts their vectors. Chunk rows are locked by that UPDATE first, so a
  concurrent delete cannot slip between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import asyncpg

from asemantic.adapters.postgres.schema import SCHEMA_LOCK, table_exists
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import EmbeddingSpaceMismatchError, StoreError

__all__ = [
    "INDEX",
    "LOAD_TABLE",
    "VECTOR_TABLE",
    "apply",
    "create_index",
    "distance_sql",
    "drop_index",
    "ensure_space",
    "index_kind",
    "integrity_problems",
    "read_space",
]

logger = logging.getLogger(__name__)

VECTOR_TABLE = "chunk_vectors"
INDEX = "chunk_vectors_hnsw"
LOAD_TABLE = "asemantic_vector_load"
_VECTOR_INDEX_MAX = 2000
_HALFVEC_INDEX_MAX = 4000

_UNREADY_FUNCTION = """CREATE OR REPLACE FUNCTION asemantic_drop_unready_vector()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM chunk_vectors WHERE chunk_id = NEW.id;
    RETURN NULL;
END $$"""
_UNREADY_TRIGGER = """CREATE TRIGGER chunks_vector_unready
AFTER UPDATE OF embedding_status ON chunks FOR EACH ROW
WHEN (OLD.embedding_status = 'READY' AND NEW.embedding_status <> 'READY')
EXECUTE FUNCTION asemantic_drop_unready_vector()"""


def index_kind(dimensions: int) -> str | None:
    """``"vector"``, ``"halfvec"`` (over 2,000 dimensions) or None (over 4,000)."""
    if dimensions <= _VECTOR_INDEX_MAX:
        return "vector"
    if dimensions <= _HALFVEC_INDEX_MAX:
        return "halfvec"
    return None


def distance_sql(dimensions: int, query: str, *, column: str = "v.embedding") -> str:
    """The distance expression the index orders by (``query`` is a parameter)."""
    if index_kind(dimensions) == "halfvec":
        d = int(dimensions)
        return f"({column}::halfvec({d}) <=> {query}::halfvec({d}))"
    return f"({column} <=> {query})"


def _index_ddl(dimensions: int) -> str | None:
    kind = index_kind(dimensions)
    if kind == "vector":
        return (
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON {VECTOR_TABLE} "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    if kind == "halfvec":
        d = int(dimensions)
        return (
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON {VECTOR_TABLE} USING hnsw "
            f"((embedding::halfvec({d})) halfvec_cosine_ops)"
        )
    return None


async def read_space(conn: asyncpg.Connection) -> EmbeddingSpace | None:
    row = await conn.fetchrow(
        "SELECT model, dimensions, task_type FROM embedding_space WHERE id = 1"
    )
    if row is None:
        return None
    return EmbeddingSpace(
        model=str(row["model"]), dimensions=int(row["dimensions"]), task_type=str(row["task_type"])
    )


def _check_same(recorded: EmbeddingSpace, wanted: EmbeddingSpace) -> None:
    if recorded != wanted:
        raise EmbeddingSpaceMismatchError(
            f"this database holds vectors of {recorded.describe()}, but "
            f"{wanted.describe()} was asked for; vectors of two spaces never mix "
            "(use another database, or open this one with its own space)"
        )


async def ensure_space(
    conn: asyncpg.Connection, space: EmbeddingSpace | None
) -> EmbeddingSpace | None:
    """Check ``space`` against the recorded one, recording it (and creating
    ``chunk_vectors`` with its trigger and index) on first use, under the schema lock.
    Returns the database's space (None if none is known yet)."""
    recorded = await read_space(conn)
    if recorded is not None:
        if space is not None:
            _check_same(recorded, space)
        return recorded
    if space is None:
        return None
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        recorded = await read_space(conn)
        if recorded is not None:
            _check_same(recorded, space)
            return recorded
        if await table_exists(conn, VECTOR_TABLE):
            raise StoreError("chunk_vectors exists but no embedding space is recorded")
        await conn.execute(
            "INSERT INTO embedding_space (id, model, dimensions, task_type) VALUES (1, $1, $2, $3)",
            space.model,
            space.dimensions,
            space.task_type,
        )
        await conn.execute(
            f"CREATE TABLE {VECTOR_TABLE} (chunk_id bigint PRIMARY KEY REFERENCES chunks(id) "
            f"ON DELETE CASCADE, embedding vector({int(space.dimensions)}) NOT NULL)"
        )
        await conn.execute(_UNREADY_FUNCTION)
        await conn.execute(_UNREADY_TRIGGER)
        await create_index(conn, space.dimensions)
    logger.info("embedding space recorded")
    return space


async def create_index(
    conn: asyncpg.Connection, dimensions: int, *, maintenance_work_mem: str | None = None
) -> bool:
    """Build the HNSW index if it is missing (False when the dimensions allow none).

    ``maintenance_work_mem`` (for example ``"1GB"``) speeds up a build over many rows:
    the graph is built in memory when it fits.
    """
    ddl = _index_ddl(dimensions)
    if ddl is None:
        logger.info("no HNSW index above %d dimensions; searches are exact", _HALFVEC_INDEX_MAX)
        return False
    async with conn.transaction():
        if maintenance_work_mem is not None:
            await conn.execute(
                "SELECT set_config('maintenance_work_mem', $1, true)", maintenance_work_mem
            )
        await conn.execute(ddl)
    return True


async def drop_index(conn: asyncpg.Connection) -> None:
    """Drop the HNSW index (searches are exact until :func:`create_index`)."""
    await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")


_LOAD = (
    "WITH ready AS (UPDATE chunks c SET embedding_status = 'READY', error_message = NULL, "
    f"updated_at = now() FROM {LOAD_TABLE} l WHERE c.id = l.chunk_id RETURNING c.id) "
    f"INSERT INTO {VECTOR_TABLE} (chunk_id, embedding) "
    f"SELECT l.chunk_id, l.embedding FROM {LOAD_TABLE} l JOIN ready r ON r.id = l.chunk_id "
    "ON CONFLICT (chunk_id) DO UPDATE SET embedding = excluded.embedding"
)


async def apply(conn: asyncpg.Connection, mapping: Mapping[int, bytes], dimensions: int) -> int:
    """Store checked vectors by chunk id and mark those chunks READY (inside the
    caller's transaction). Ids of chunks that do not exist are skipped; the count of
    chunks that got their vector is returned. ``batch_job_id`` is left as it is."""
    if not mapping:
        return 0
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {LOAD_TABLE} (chunk_id bigint NOT NULL, "
        f"embedding vector({int(dimensions)}) NOT NULL) ON COMMIT DELETE ROWS"
    )
    await conn.execute(f"TRUNCATE {LOAD_TABLE}")
    records = [(int(chunk_id), bytes(blob)) for chunk_id, blob in mapping.items()]
    await conn.copy_records_to_table(LOAD_TABLE, records=records, columns=["chunk_id", "embedding"])
    status = await conn.execute(_LOAD)
    return int(str(status).rsplit(" ", 1)[-1])


_PROBLEMS = f"""SELECT
    (SELECT count(*) FROM chunks c WHERE c.embedding_status = 'READY' AND NOT EXISTS
        (SELECT 1 FROM {VECTOR_TABLE} v WHERE v.chunk_id = c.id)),
    (SELECT count(*) FROM {VECTOR_TABLE} v WHERE NOT EXISTS
        (SELECT 1 FROM chunks c WHERE c.id = v.chunk_id AND c.embedding_status = 'READY')),
    (SELECT atttypmod FROM pg_attribute WHERE attrelid = '{VECTOR_TABLE}'::regclass
        AND attname = 'embedding'),
    (SELECT bool_and(i.indisvalid) FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
        WHERE x.relname = '{INDEX}')"""


async def integrity_problems(conn: asyncpg.Connection, space: EmbeddingSpace | None) -> list[str]:
    """What is wrong with the vectors, or an empty list (one snapshot: call it in a
    repeatable-read transaction)."""
    problems: list[str] = []
    if space is None or not await table_exists(conn, VECTOR_TABLE):
        ready = await conn.fetchval("SELECT count(*) FROM chunks WHERE embedding_status = 'READY'")
        if ready:
            problems.append(f"{ready} READY chunks but no vector table")
        return problems
    missing, stray, typmod, index_valid = await conn.fetchrow(_PROBLEMS)
    if missing:
        problems.append(f"{missing} READY chunks have no vector")
    if stray:
        problems.append(f"{stray} vectors belong to no READY chunk")
    if typmod is not None and int(typmod) != space.dimensions:
        problems.append(
            f"chunk_vectors holds {typmod}-dimensional vectors, the space {space.dimensions}"
        )
    if index_valid is False:
        problems.append(f"the index {INDEX} is invalid (rebuild it)")
    return problems
