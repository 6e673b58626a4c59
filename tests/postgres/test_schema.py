"""The PostgreSQL schema: made once, even by several openers at once; newer refused."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
import pytest

from asemantic.adapters.postgres.connection import (
    decode_vector,
    encode_vector,
    open_connection,
    redact_url,
    register_vector_codec,
)
from asemantic.adapters.postgres.schema import (
    CURRENT_VERSION,
    check_schema_version,
    ensure_schema_compatibility,
    read_database_id,
    read_version,
)
from asemantic.errors import SchemaVersionError

TABLES = {
    "schema_version",
    "documents",
    "chunks",
    "batch_jobs",
    "batch_job_transitions",
    "usage_ledger",
    "store_meta",
    "supervisor_lease",
    "embedding_space",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {str(row["tablename"]) for row in rows}


async def test_a_fresh_database_gets_every_table_and_version_1(postgres_url: str) -> None:
    conn = await open_connection(postgres_url)
    try:
        assert await read_version(conn) == 0
        assert await ensure_schema_compatibility(conn) == 0
        assert await read_version(conn) == CURRENT_VERSION
        assert await _tables(conn) >= TABLES
        database_id = await read_database_id(conn)
        assert len(database_id) == 32
        # Idempotent: a second call finds version 1 and changes nothing.
        assert await ensure_schema_compatibility(conn) == CURRENT_VERSION
        assert await read_database_id(conn) == database_id
        columns = {
            str(row["column_name"])
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'chunks'"
            )
        }
    finally:
        await conn.close()
    assert {
        "content_hash",
        "embedding_status",
        "batch_job_id",
        "error_message",
        "attempts",
        "created_at",
        "updated_at",
    } <= columns


async def test_many_openers_of_a_fresh_database_make_one_schema(postgres_url: str) -> None:
    conns = [await open_connection(postgres_url) for _ in range(6)]
    try:
        found = await asyncio.gather(*(ensure_schema_compatibility(c) for c in conns))
        ids = {await read_database_id(c) for c in conns}
        versions = await conns[0].fetchval("SELECT count(*) FROM schema_version")
    finally:
        for conn in conns:
            await conn.close()
    # One made it; the others waited, then saw it.
    assert sorted(found) == [0, *[CURRENT_VERSION] * 5]
    assert len(ids) == 1
    assert versions == 1


async def test_a_newer_schema_is_refused_untouched(postgres_url: str) -> None:
    conn = await open_connection(postgres_url)
    try:
        await ensure_schema_compatibility(conn)
        await conn.execute("UPDATE schema_version SET version = $1", CURRENT_VERSION + 1)
        before = await _tables(conn)
        with pytest.raises(SchemaVersionError, match="newer"):
            await check_schema_version(conn)
        with pytest.raises(SchemaVersionError, match="upgrade asemantic"):
            await ensure_schema_compatibility(conn)
        assert await _tables(conn) == before
        assert await read_version(conn) == CURRENT_VERSION + 1
    finally:
        await conn.close()


async def test_vectors_travel_as_little_endian_float32_blobs(postgres_url: str) -> None:
    values = np.array([0.5, -1.25, 3.0, 1e-7], dtype="<f4")
    blob = values.tobytes()
    assert decode_vector(encode_vector(blob)) == blob
    conn = await open_connection(postgres_url)
    try:
        await register_vector_codec(conn)
        text = await conn.fetchval("SELECT $1::vector::text", blob)
        back = await conn.fetchval("SELECT '[0.5,-1.25,3,1e-07]'::vector")
        distance = await conn.fetchval("SELECT $1::vector <=> $1::vector", blob)
    finally:
        await conn.close()
    assert text == "[0.5,-1.25,3,1e-07]"
    assert back == blob
    assert distance == pytest.approx(0.0, abs=1e-6)


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://kb:s3cret@db:5432/kb") == "postgresql://kb:***@db:5432/kb"
    shown = redact_url("postgres://kb@db/kb?password=s3cret&sslmode=require")
    assert "s3cret" not in shown
    assert "sslmode=require" in shown
    assert redact_url("postgresql://db/kb") == "postgresql://db/kb"


async def test_a_version_1_database_gets_its_keyword_index_on_upgrade(postgres_url: str) -> None:
    """Version 1 had no ``chunk_keywords``: the upgrade to 2 indexes every chunk there,
    whatever its status, in its one transaction."""
    from asemantic.adapters.postgres.store import PostgresStore
    from asemantic.domain.keywords import query_terms
    from asemantic.domain.space import EmbeddingSpace
    from tests.store.helpers import make_write

    space = EmbeddingSpace(model="lexical-hash-v1", dimensions=64)
    async with await PostgresStore.open(postgres_url, space=space) as store:
        await store.write_document(make_write("a.md", ["alpha ERR_1234 beta", "gamma delta"]))
        before = await store.keyword_search(query_terms("ERR_1234 gamma"), k=5)
    conn = await open_connection(postgres_url)
    try:  # back to version 1, as a database written before the keyword index was
        await conn.execute("DROP TABLE chunk_keywords")
        await conn.execute("UPDATE schema_version SET version = 1")
        assert await ensure_schema_compatibility(conn) == 1
        assert await read_version(conn) == CURRENT_VERSION
        assert await conn.fetchval("SELECT count(*) FROM chunk_keywords") == 2
    finally:
        await conn.close()
    async with await PostgresStore.open(postgres_url, space=space) as store:
        after = await store.keyword_search(query_terms("ERR_1234 gamma"), k=5)
    assert [(h.chunk_id, h.score) for h in after] == [(h.chunk_id, h.score) for h in before]
    assert len(after) == 2
