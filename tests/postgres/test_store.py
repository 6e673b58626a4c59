"""The PostgreSQL engine behind the factory and the core, and many openers and writers
of one database at once (tasks and processes)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import asyncpg
import pytest

from asemantic import EmbeddingSpace, GoogleKeyring, SemanticCore, StoreError
from asemantic.adapters import factory
from asemantic.adapters.factory import describe_target, open_store
from asemantic.adapters.postgres.store import PostgresStore
from asemantic.testing import LexicalEmbedder
from tests.ports.builders import AXIS, angle, make_write

SPACE = EmbeddingSpace()
LEXICAL = EmbeddingSpace(model="lexical-hash-v1", dimensions=64)


async def test_postgresql_and_postgres_urls_open_the_postgres_engine(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    short = "postgres://" + postgres_url.removeprefix("postgresql://")
    assert describe_target(short) == "postgres"
    for url in (postgres_url, short):
        store = await open_store(url, space=SPACE)
        try:
            assert isinstance(store, PostgresStore)
            assert store.space == SPACE
        finally:
            await store.aclose()


async def test_without_asyncpg_the_factory_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith("asemantic.adapters.postgres")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    with pytest.raises(StoreError, match=r'pip install "asemantic\[postgres\]"'):
        await factory.open_store("postgresql://kb@db/kb", space=SPACE)


async def test_a_core_ingests_and_searches_on_postgres(postgres_url: str) -> None:
    async with SemanticCore.open(
        postgres_url, embedder=LexicalEmbedder(LEXICAL), keys=GoogleKeyring("k")
    ) as core:
        await core.ingest("# Refunds\n\nRefunds within thirty days.", source="refunds.md")
        await core.ingest("# Outage\n\nThe gateway certificate expired.", source="outage.md")
        again = await core.ingest(
            "# Outage\n\nThe gateway certificate expired.", source="outage.md"
        )
        hits = await core.search("certificate expired", k=2)
        assert [hit.source for hit in hits] == ["outage.md", "refunds.md"]
        stats = await core.stats()
        assert stats.documents == 2
        assert stats.chunks["READY"] == 2
        assert await core.store.integrity_check() == "ok"
    assert again is not None


async def test_many_tasks_open_a_fresh_database_at_once(postgres_url: str) -> None:
    stores = await asyncio.gather(
        *(PostgresStore.open(postgres_url, space=SPACE) for _ in range(5))
    )
    try:
        assert len({store.database_id for store in stores}) == 1
        assert all(store.space == SPACE for store in stores)
        assert await stores[0].integrity_check() == "ok"
    finally:
        for store in stores:
            await store.aclose()


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from asemantic.adapters.postgres.store import PostgresStore
    from asemantic.domain.space import EmbeddingSpace
    from tests.ports.builders import angle, make_write

    async def main(url, n):
        store = await PostgresStore.open(url, space=EmbeddingSpace())
        try:
            for i in range(10):
                write = make_write(f"w{n}-{i}.md", [f"w{n} {i} a", "shared"],
                                   vectors={0: angle(n + i), 1: angle(45)})
                await store.write_document(write)
                await store.write_document(make_write("same.md", [f"by {n} at {i}", "tail"]))
            print(json.dumps({"id": store.database_id}))
        finally:
            await store.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_processes_open_and_write_one_fresh_database_at_once(postgres_url: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            postgres_url,
            str(n),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 120) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    ids = {json.loads(out.decode().strip().splitlines()[-1])["id"] for out, _ in outputs}
    assert len(ids) == 1
    store = await PostgresStore.open(postgres_url, space=SPACE)
    try:
        stats = await store.stats()
        assert stats.documents == 31
        assert stats.chunks["READY"] == 60
        assert stats.chunks["PENDING"] == 2  # same.md: the last writer's two chunks
        same = await store.get_document("same.md")
        assert same is not None
        assert [c.position for c in same.chunks] == [0, 1]
        assert await store.integrity_check() == "ok"
        assert len(await store.search(AXIS, k=100)) == 60
    finally:
        await store.aclose()
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == 1
    finally:
        await conn.close()


async def test_concurrent_writes_of_one_document_leave_one_consistent_version(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url, space=SPACE)
    try:
        writes = [
            make_write("doc.md", [f"version {n}", "kept"], vectors={1: angle(10)}) for n in range(8)
        ]
        await asyncio.gather(*(store.write_document(w) for w in writes))
        snapshot = await store.get_document("doc.md")
        assert snapshot is not None
        assert [c.position for c in snapshot.chunks] == [0, 1]
        assert len(await store.search(AXIS, k=10)) == 1  # "kept", one vector, reused
        assert await store.integrity_check() == "ok"
    finally:
        await store.aclose()


async def test_a_chunk_leaving_ready_loses_its_vector_in_the_database(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, space=SPACE)
    try:
        await store.write_document(make_write("doc.md", ["a", "b"], vectors={0: angle(0)}))
        async with store.transaction() as conn:
            await conn.execute("UPDATE chunks SET embedding_status = 'FAILED'")
            left = await conn.fetchval("SELECT count(*) FROM chunk_vectors")
        assert left == 0
        assert await store.integrity_check() == "ok"
        assert await store.search(AXIS, k=5) == []
    finally:
        await store.aclose()


async def test_integrity_check_reports_a_vector_without_a_ready_chunk(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, space=SPACE)
    try:
        await store.write_document(make_write("doc.md", ["a", "b"], vectors={0: angle(0)}))
        snapshot = await store.get_document("doc.md")
        assert snapshot is not None
        pending = snapshot.chunks[1].chunk_id
        async with store.transaction() as conn:  # what no asemantic write does
            await conn.execute(
                "INSERT INTO chunk_vectors (chunk_id, embedding) VALUES ($1, $2)",
                pending,
                angle(5),
            )
        assert "1 vectors belong to no READY chunk" in await store.integrity_check()
    finally:
        await store.aclose()
