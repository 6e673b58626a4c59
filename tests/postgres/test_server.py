"""The test PostgreSQL server: every test database is separate and has pgvector."""

from __future__ import annotations

import asyncpg

from asemantic.testing.postgres import LocalPostgres


async def test_a_test_database_has_pgvector(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        distance = await conn.fetchval("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
    finally:
        await conn.close()
    assert version is not None
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)
    assert distance == 1.0


async def test_databases_are_separate_and_dropped(postgres_server: LocalPostgres) -> None:
    first = await postgres_server.create_database()
    second = await postgres_server.create_database()
    assert first != second
    conn = await asyncpg.connect(first)
    try:
        await conn.execute("CREATE TABLE marker (id int)")
    finally:
        await conn.close()
    conn = await asyncpg.connect(second)
    try:
        assert await conn.fetchval("SELECT to_regclass('marker')") is None
    finally:
        await conn.close()
    for url in (first, second):
        await postgres_server.drop_database(url)
    admin = await asyncpg.connect(postgres_server.admin_url)
    try:
        names = {row["datname"] for row in await admin.fetch("SELECT datname FROM pg_database")}
    finally:
        await admin.close()
    assert not {first.rsplit("/", 1)[-1], second.rsplit("/", 1)[-1]} & names
