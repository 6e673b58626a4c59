"""SQLite -> PostgreSQL -> SQLite on the real embedded server, verified both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asemantic import (
    Document,
    KnowledgeBaseMismatchError,
    TransferVerificationError,
    copy_knowledge_base,
)
from asemantic.adapters.postgres.store import PostgresStore
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.copy import CopyProgress
from asemantic.copy.checksums import measure
from asemantic.domain.hashing import content_hash
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import DocumentWrite, TransferChunk, TransferTable
from tests.transfer.conftest import SPACE, table_rows


async def _figures(path: Path) -> dict[str, tuple[int, str]]:
    async with await SqliteStore.open(path) as store:
        found = await measure(store.transfer, batch_size=50)
    return {name: (f.rows, f.checksum) for name, f in found.items()}


async def _has_index(store: PostgresStore) -> bool:
    rows = await store.fetch("SELECT count(*) FROM pg_class WHERE relname = 'chunk_vectors_hnsw'")
    return int(rows[0][0]) == 1


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """An empty PostgreSQL knowledge base (no space recorded yet)."""
    store = await PostgresStore.open(postgres_url)
    try:
        yield store
    finally:
        await store.aclose()


async def test_sqlite_to_postgres_and_back_keeps_every_checksum(
    source_kb: Path, tmp_path: Path, postgres: PostgresStore
) -> None:
    before = await _figures(source_kb)
    report = await copy_knowledge_base(source_kb, postgres, batch_size=7)
    assert report.verified and report.destination_engine == "PostgresStore"
    assert {t.table: (t.destination.rows, t.destination.checksum) for t in report.tables} == before
    assert postgres.space == SPACE
    assert await _has_index(postgres)  # dropped for the load, built again at the end
    assert postgres.database_id == table_rows(source_kb, "store_meta", "value")[0][0]
    assert await postgres.integrity_check() == "ok"

    back = tmp_path / "back.db"
    report = await copy_knowledge_base(postgres, back, batch_size=1000)
    assert report.verified
    assert await _figures(back) == before
    async with await SqliteStore.open(source_kb) as a, await SqliteStore.open(back) as b:
        assert await b.integrity_check() == "ok"
        assert await b.stats() == await a.stats() == await postgres.stats()
        query = (await a.transfer.export_rows(TransferTable.CHUNKS, after=None, limit=1))[0]
        assert isinstance(query, TransferChunk) and query.vector is not None
        expected = await a.search(query.vector, k=5)
        assert [(h.chunk_id, h.distance) for h in await b.search(query.vector, k=5)] == [
            (h.chunk_id, h.distance) for h in expected
        ]
        hits = await postgres.search(query.vector, k=5)
        assert hits[0].chunk_id == query.chunk_id and hits[0].distance == pytest.approx(0, abs=1e-6)
        assert [round(h.distance or 0.0, 5) for h in hits] == [
            round(h.distance or 0.0, 5) for h in expected
        ]


async def test_later_writes_on_postgres_get_fresh_ids(
    source_kb: Path, postgres: PostgresStore
) -> None:
    await copy_knowledge_base(source_kb, postgres)
    text = "a new note written after the move"
    outcome = await postgres.write_document(
        DocumentWrite(
            document=Document(text=text, source="after-the-move"),
            content_hash=content_hash(text),
            drafts=[],
        )
    )
    assert outcome.document_id > max(
        int(str(r[0])) for r in table_rows(source_kb, "documents", "id")
    )
    await postgres.record_usage("online", texts=1, tokens=5)
    rows = await postgres.fetch("SELECT max(id) FROM usage_ledger")
    assert int(rows[0][0]) == len(table_rows(source_kb, "usage_ledger", "id")) + 1


async def test_an_interrupted_copy_into_postgres_resumes(
    source_kb: Path, postgres: PostgresStore
) -> None:
    def stop(step: CopyProgress) -> None:
        if step.table == "chunks" and step.batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await copy_knowledge_base(source_kb, postgres, batch_size=4, on_batch=stop)
    rows = await postgres.fetch("SELECT count(*) FROM chunks")
    assert int(rows[0][0]) == 8
    assert await postgres.integrity_check() == "ok"
    assert not await _has_index(postgres)  # left out by the interrupted load
    report = await copy_knowledge_base(source_kb, postgres, batch_size=4)
    assert report.verified and report.resumed
    assert await _has_index(postgres)
    assert {t.table: t.destination.rows for t in report.tables} == {
        name: rows for name, (rows, _) in (await _figures(source_kb)).items()
    }


async def test_postgres_refuses_another_knowledge_base_and_reports_differences(
    source_kb: Path, tmp_path: Path, postgres: PostgresStore
) -> None:
    await copy_knowledge_base(source_kb, postgres)
    async with postgres.transaction() as conn:
        await conn.execute("UPDATE chunks SET attempts = attempts + 1 WHERE id = 2")
    with pytest.raises(TransferVerificationError, match="in chunks"):
        await copy_knowledge_base(source_kb, postgres)
    other = tmp_path / "other.db"
    async with await SqliteStore.open(other, space=EmbeddingSpace(dimensions=768)) as store:
        text = "another knowledge base"
        await store.write_document(
            DocumentWrite(
                document=Document(text=text, source="other"),
                content_hash=content_hash(text),
                drafts=[],
            )
        )
    with pytest.raises(KnowledgeBaseMismatchError):
        await copy_knowledge_base(other, postgres)


def test_the_command_line_moves_to_postgres_and_back(
    source_kb: Path, tmp_path: Path, postgres_url: str
) -> None:
    """``asemantic copy kb.db postgresql://...`` and back, by URL, as a user types it."""
    from click.testing import CliRunner

    from asemantic.cli import cli

    env = {"GEMINI_API_KEY": None, "GEMINI_BATCH_API_KEY": None, "ASEMANTIC_DB": None}
    there = CliRunner().invoke(
        cli, ["copy", str(source_kb), postgres_url, "--batch-size", "8"], env=env
    )
    assert there.exit_code == 0, there.stderr
    assert "copy: chunks batch 3: 21/21 rows" in there.stderr
    assert "verified: counts and checksums match" in there.stdout
    back = tmp_path / "back.db"
    home = CliRunner().invoke(cli, ["--json", "copy", postgres_url, str(back)], env=env)
    assert home.exit_code == 0, home.stderr
    record = json.loads(home.stdout)
    assert record["verified"] and record["source_engine"] == "postgresql"
    assert record["database_id"] == table_rows(source_kb, "store_meta", "value")[0][0]
    before = asyncio.run(_figures(source_kb))
    assert {
        t["table"]: (t["destination_rows"], t["destination_sha256"]) for t in record["tables"]
    } == before
