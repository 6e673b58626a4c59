"""Copying a knowledge base between real SQLite files and the memory engine."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asemantic import (
    EmbeddingSpace,
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    JobStatus,
    KnowledgeBaseMismatchError,
    SupervisorLeaseError,
    TransferError,
    TransferVerificationError,
    copy_knowledge_base,
)
from asemantic.adapters.memory import MemoryStore
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.copy import VECTORS, CopyProgress, transfer_of
from asemantic.copy.checksums import measure
from asemantic.ports import TransferTable
from asemantic.testing.emulator import GeminiEmulator
from tests.transfer.conftest import SPACE, OpenCore, fill, sql, table_rows

TABLES = ("documents", "batch_jobs", "chunks", "batch_job_transitions", "usage_ledger")


async def _figures(path: Path) -> dict[str, tuple[int, str]]:
    async with await SqliteStore.open(path) as store:
        found = await measure(store.transfer, batch_size=7)
    return {name: (f.rows, f.checksum) for name, f in found.items()}


async def test_sqlite_to_sqlite_copies_every_table_verified(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "copy.db"
    before = await _figures(source_kb)
    report = await copy_knowledge_base(source_kb, dst, batch_size=5)

    assert report.verified and not report.resumed
    assert [t.table for t in report.tables] == [
        "documents",
        "batch_jobs",
        "chunks",
        VECTORS,
        "batch_job_transitions",
        "usage_ledger",
    ]
    by_name = {t.table: t for t in report.tables}
    for name, (rows, checksum) in before.items():
        assert by_name[name].source.rows == by_name[name].destination.rows == rows > 0, name
        assert by_name[name].destination.checksum == checksum
    assert by_name["documents"].copied == 21
    assert by_name[VECTORS].copied == by_name[VECTORS].source.rows  # inside the chunk pages
    assert report.copied == sum(rows for rows, _ in before.values())
    # The files agree row for row (timestamps aside: they are rewritten canonically).
    assert table_rows(dst, "documents", "id, source, title, content_hash, metadata_json") == (
        table_rows(source_kb, "documents", "id, source, title, content_hash, metadata_json")
    )
    chunk_columns = (
        "id, document_id, position, text, meta_json, content_hash, embedding_status, "
        "batch_job_id, error_message, attempts"
    )
    assert table_rows(dst, "chunks", chunk_columns) == table_rows(
        source_kb, "chunks", chunk_columns
    )
    job_columns = "id, google_job_id, display_name, status, input_file, output_file"
    assert table_rows(dst, "batch_jobs", job_columns) == table_rows(
        source_kb, "batch_jobs", job_columns
    )
    assert [json.loads(str(r[1])) for r in table_rows(dst, "batch_jobs", "id, stats")] == [
        json.loads(str(r[1])) for r in table_rows(source_kb, "batch_jobs", "id, stats")
    ]
    assert table_rows(dst, "usage_ledger", "id, route, texts, tokens") == table_rows(
        source_kb, "usage_ledger", "id, route, texts, tokens"
    )
    assert table_rows(dst, "store_meta") == table_rows(source_kb, "store_meta")
    assert table_rows(dst, "embedding_space") == table_rows(source_kb, "embedding_space")
    statuses = {row[1] for row in table_rows(dst, "chunks", "id, embedding_status")}
    assert statuses == {"READY", "PENDING", "FAILED"}
    marks = "id, cleaned_at IS NOT NULL, create_attempted_at IS NOT NULL"
    assert table_rows(dst, "batch_jobs", marks) == table_rows(source_kb, "batch_jobs", marks)
    assert {row[1] for row in table_rows(dst, "batch_jobs", marks)} == {0, 1}
    attempted = "id, status, create_attempted_at"
    active = [r for r in table_rows(dst, "batch_jobs", attempted) if r[1] == "SUBMITTED"]
    assert [datetime.fromisoformat(str(r[2])) for r in active] == [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ]


async def test_the_copy_works_like_the_source(
    source_kb: Path, tmp_path: Path, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    """Same hits, same stats and cost; the destination's supervisor pass finishes the
    source's remote job (the copy kept the database id its remote objects are named by)."""
    dst = tmp_path / "copy.db"
    await copy_knowledge_base(source_kb, dst)
    source = await open_core(source_kb)
    copy = await open_core(dst)
    assert await copy.store.integrity_check() == "ok"
    assert await copy.batch_jobs.database_id() == await source.batch_jobs.database_id()
    assert await copy.stats() == await source.stats()  # counts, tokens and cost
    hits = await copy.search("refund certificate", k=5)
    expected = await source.search("refund certificate", k=5)
    assert [(h.chunk_id, h.source, round(h.distance or 0.0, 6)) for h in hits] == [
        (h.chunk_id, h.source, round(h.distance or 0.0, 6)) for h in expected
    ]
    # The keyword index travels with the chunks (PENDING ones included).
    words = await copy.search("refund certificate", k=5, mode="keyword")
    assert words and [(h.chunk_id, h.score, h.embedding_status) for h in words] == [
        (h.chunk_id, h.score, h.embedding_status)
        for h in await source.search("refund certificate", k=5, mode="keyword")
    ]
    await source.aclose()
    active = await copy.batch_jobs.jobs([JobStatus.SUBMITTED])
    assert len(active) == 1
    emulator.complete_all()
    await copy.batch_manager.sync_status()
    job = await copy.batch_jobs.get_job(active[0].job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.cleaned
    counts = await copy.store.count_chunks_by_status()
    assert counts == {"READY": 19, "PENDING": 1, "FAILED": 1}  # one queued, one failed
    assert not emulator.remote_leftovers().batches


async def test_sqlite_to_memory_and_back_keeps_every_checksum(
    source_kb: Path, tmp_path: Path
) -> None:
    before = await _figures(source_kb)
    memory = MemoryStore()
    report = await copy_knowledge_base(source_kb, memory, batch_size=4)
    assert report.verified
    assert memory.space == SPACE
    assert await memory.integrity_check() == "ok"
    back = tmp_path / "back.db"
    report = await copy_knowledge_base(memory, back, batch_size=1000)
    assert report.verified
    assert await _figures(back) == before
    stats = await memory.stats()
    async with await SqliteStore.open(back) as store:
        assert await store.stats() == stats
        assert await store.integrity_check() == "ok"
    await memory.aclose()


async def test_memory_to_sqlite_copies_what_memory_wrote(
    tmp_path: Path, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    memory = MemoryStore(space=SPACE)
    core = await open_core(memory)
    await fill(core, emulator, documents=5)
    dst = tmp_path / "from-memory.db"
    report = await copy_knowledge_base(memory, dst, batch_size=3)
    assert report.verified
    figures = {t.table: t.source.rows for t in report.tables}
    assert figures["batch_job_transitions"] > 0 and figures["usage_ledger"] > 0
    copy = await open_core(dst)
    assert await copy.store.stats() == await memory.stats()
    assert await copy.store.integrity_check() == "ok"
    hits = await copy.search("refund", k=3)
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in await core.search("refund", k=3)]


async def test_an_interrupted_copy_resumes_without_duplicates(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "copy.db"
    seen: list[CopyProgress] = []

    def stop_in_chunks(step: CopyProgress) -> None:
        seen.append(step)
        if step.table == "chunks" and step.batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await copy_knowledge_base(source_kb, dst, batch_size=3, on_batch=stop_in_chunks)
    partial = len(table_rows(dst, "chunks", "id"))
    assert partial == 6  # two committed pages of three
    report = await copy_knowledge_base(source_kb, dst, batch_size=3)
    assert report.verified and report.resumed
    by_name = {t.table: t for t in report.tables}
    assert by_name["documents"].copied == 0  # already there
    assert by_name["chunks"].copied == by_name["chunks"].source.rows - partial
    ids = [row[0] for row in table_rows(dst, "chunks", "id")]
    assert len(ids) == len(set(ids)) == by_name["chunks"].source.rows
    assert [s.batch for s in seen if s.table == "documents"] == list(range(1, 8))
    # Copying again: nothing to do, still verified.
    again = await copy_knowledge_base(source_kb, dst)
    assert again.verified and again.copied == 0


async def test_refuses_a_destination_holding_another_knowledge_base(
    source_kb: Path, tmp_path: Path, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    other = tmp_path / "other.db"
    core = await open_core(other)
    await core.ingest("# Other\n\nanother knowledge base", source="other", mode="sync")
    await core.batch_jobs.database_id()
    await core.aclose()
    before = table_rows(other, "documents"), table_rows(other, "store_meta")
    with pytest.raises(KnowledgeBaseMismatchError, match="another knowledge base"):
        await copy_knowledge_base(source_kb, other)
    assert (table_rows(other, "documents"), table_rows(other, "store_meta")) == before
    assert table_rows(other, "supervisor_lease") == []


async def test_refuses_a_destination_of_another_space(source_kb: Path, tmp_path: Path) -> None:
    dst = tmp_path / "small.db"
    async with await SqliteStore.open(dst, space=EmbeddingSpace(dimensions=256)):
        pass
    with pytest.raises(EmbeddingSpaceMismatchError, match="never mix"):
        await copy_knowledge_base(source_kb, dst)
    assert table_rows(dst, "store_meta") == [] and table_rows(dst, "supervisor_lease") == []


async def test_refuses_a_missing_source_and_the_same_target_twice(
    source_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.db"
    dst = tmp_path / "dst.db"
    with pytest.raises(TransferError, match="no knowledge base at"):
        await copy_knowledge_base(missing, dst)
    assert not missing.exists() and not dst.exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="the same knowledge base"):
        await copy_knowledge_base(source_kb, "./source.db")
    store = MemoryStore()
    with pytest.raises(InvalidInputError, match="the same"):
        await copy_knowledge_base(store, store)
    with pytest.raises(InvalidInputError, match="MemoryStore object"):
        await copy_knowledge_base(source_kb, ":memory:")


async def test_refuses_while_a_supervisor_holds_the_source(source_kb: Path, tmp_path: Path) -> None:
    import time

    async with await SqliteStore.open(source_kb) as store:
        lease = await store.jobs.acquire_lease("supervisor-1", ttl=60, now=time.time())
        assert lease.acquired
        with pytest.raises(SupervisorLeaseError, match="stop it before copying"):
            await copy_knowledge_base(store, tmp_path / "dst.db")
        await store.jobs.release_lease("supervisor-1")
        report = await copy_knowledge_base(store, tmp_path / "dst.db")
        assert report.verified
    assert table_rows(source_kb, "supervisor_lease") == []  # the copy's own lease is gone


async def test_a_destination_that_differs_fails_verification(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "copy.db"
    await copy_knowledge_base(source_kb, dst)
    await sql(
        dst,
        "UPDATE chunks SET text = text || ' (edited)' WHERE id = 1",
        "DELETE FROM usage_ledger WHERE id = (SELECT MIN(id) FROM usage_ledger)",
    )
    with pytest.raises(TransferVerificationError, match="chunks, usage_ledger") as caught:
        await copy_knowledge_base(source_kb, dst)
    report = caught.value.report
    from asemantic import CopyReport

    assert isinstance(report, CopyReport) and not report.verified
    wrong = {t.table: t for t in report.tables if not t.matches}
    assert set(wrong) == {"chunks", "usage_ledger"}
    assert wrong["chunks"].source.rows == wrong["chunks"].destination.rows
    assert wrong["usage_ledger"].destination.rows == wrong["usage_ledger"].source.rows - 1


async def test_an_empty_destination_with_an_id_of_its_own_takes_the_sources(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "fresh.db"
    async with await SqliteStore.open(dst, space=SPACE) as store:
        own = await store.jobs.database_id()
    await copy_knowledge_base(source_kb, dst)
    async with await SqliteStore.open(dst) as store:
        copied = await store.jobs.database_id()
    assert copied != own and copied == table_rows(source_kb, "store_meta", "value")[0][0]


async def test_every_engine_has_the_transfer_port() -> None:
    store = MemoryStore()
    transfer = transfer_of(store)
    inventory = await transfer.inventory()
    assert inventory.empty and set(inventory.rows) == set(TransferTable)

    class Bare:
        pass

    with pytest.raises(TransferError, match="cannot export"):
        transfer_of(Bare())  # type: ignore[arg-type]
    await store.aclose()


async def test_no_supervisor_can_start_on_either_side_mid_copy(
    source_kb: Path, tmp_path: Path
) -> None:
    reached = asyncio.Event()

    def hook(step: CopyProgress) -> None:
        if step.table == "chunks" and step.batch == 2:
            reached.set()

    async with (
        await SqliteStore.open(source_kb) as src,
        await SqliteStore.open(tmp_path / "copy.db") as dst,
    ):
        copying = asyncio.create_task(copy_knowledge_base(src, dst, batch_size=1, on_batch=hook))
        await reached.wait()
        probes = [
            (await side.jobs.acquire_lease("supervisor-1", ttl=30, now=time.time())).acquired
            for side in (src, dst)
        ]
        report = await copying
        assert probes == [False, False]  # mid-copy, the copy's lease keeps supervisors out
        assert report.verified
        for side in (src, dst):  # and lets them in once it is done
            assert (await side.jobs.acquire_lease("supervisor-1", ttl=30, now=time.time())).acquired


async def test_refuses_while_a_supervisor_holds_the_destination(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst.db"
    async with await SqliteStore.open(dst, space=SPACE) as store:
        assert (await store.jobs.acquire_lease("supervisor-2", ttl=60, now=time.time())).acquired
        with pytest.raises(SupervisorLeaseError, match="destination's lease"):
            await copy_knowledge_base(source_kb, store)
        assert (await store.transfer.inventory()).empty  # nothing written
        assert table_rows(source_kb, "supervisor_lease") == []  # the source's lease let go
