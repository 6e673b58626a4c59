"""The store factory: the target's form picks the engine, and a core runs on each."""

from __future__ import annotations

from pathlib import Path

import pytest

from asemantic import EmbeddingSpace, GoogleKeyring, SemanticCore, StoreError
from asemantic.adapters.factory import describe_target, open_store
from asemantic.adapters.memory import MemoryStore
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.testing import LexicalEmbedder
from tests.support import NO_POSTGRES, postgres_on_branch

SPACE = EmbeddingSpace(model="lexical-hash-v1", dimensions=64)


@pytest.mark.parametrize(
    ("target", "engine"),
    [
        (":memory:", "memory"),
        ("memory://", "memory"),
        ("kb.db", "sqlite"),
        ("/var/lib/kb/knowledge.sqlite", "sqlite"),
        ("C:\\kb\\kb.db", "sqlite"),
        ("postgresql://user@host:5432/db", "postgresql"),
        ("MySQL://host/db", "mysql"),
    ],
)
def test_the_targets_form_names_the_engine(target: str, engine: str) -> None:
    assert describe_target(target) == engine


async def test_a_path_opens_sqlite_and_memory_opens_the_memory_engine(tmp_path: Path) -> None:
    sqlite = await open_store(tmp_path / "kb.db", space=SPACE)
    memory = await open_store(":memory:", space=SPACE)
    try:
        assert isinstance(sqlite, SqliteStore)
        assert isinstance(memory, MemoryStore)
        assert sqlite.space == memory.space == SPACE
        assert (tmp_path / "kb.db").exists()
    finally:
        await sqlite.aclose()
        await memory.aclose()


async def test_an_unknown_url_scheme_is_refused_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="no engine for mysql://"):
        await open_store("mysql://host/db", space=SPACE)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's own temp folder


@pytest.mark.parametrize("target", [":memory:", "file"])
async def test_a_core_ingests_and_searches_on_either_engine(tmp_path: Path, target: str) -> None:
    where = str(tmp_path / "kb.db") if target == "file" else target
    async with SemanticCore.open(
        where, embedder=LexicalEmbedder(SPACE), keys=GoogleKeyring("k", batch_key="b")
    ) as core:
        await core.ingest("# Refunds\n\nRefunds within thirty days.", source="refunds.md")
        await core.ingest("# Outage\n\nThe gateway certificate expired.", source="outage.md")
        hits = await core.search("certificate expired", k=2)
        assert [hit.source for hit in hits] == ["outage.md", "refunds.md"]
        stats = await core.stats()
        assert stats.documents == 2
        assert stats.chunks["READY"] == 2
        assert await core.store.integrity_check() == "ok"


async def test_a_store_object_is_used_as_it_is_and_closed_with_the_core() -> None:
    store = MemoryStore(space=SPACE)
    async with SemanticCore.open(store, embedder=LexicalEmbedder(SPACE)) as core:
        assert core.store is store
        assert core.batch_jobs is store.jobs
        await core.ingest("# Notes\n\nShort text.", source="notes.md")
    with pytest.raises(StoreError):  # closed with the core
        await store.stats()


@pytest.mark.skipif(not postgres_on_branch(), reason=NO_POSTGRES)
async def test_a_postgresql_url_opens_the_postgres_engine(postgres_url: str) -> None:
    store = await open_store(postgres_url, space=SPACE)
    try:
        assert type(store).__module__.startswith("asemantic.adapters.postgres")
        assert store.space == SPACE
        assert (await store.stats()).empty
    finally:
        await store.aclose()
    async with SemanticCore.open(postgres_url, embedder=LexicalEmbedder(SPACE)) as core:
        await core.ingest("# Outage\n\nThe gateway certificate expired.", source="outage.md")
        assert [hit.source for hit in await core.search("certificate", k=1)] == ["outage.md"]
