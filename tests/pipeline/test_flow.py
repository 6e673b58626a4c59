"""The whole deferred flow: ingest async -> flush -> jobs progress -> results -> search."""

from __future__ import annotations

import pytest

from asemantic import (
    EmbeddingStatus,
    GoogleKeyring,
    IngestMode,
    JobStatus,
    TransitionEvent,
)
from asemantic.testing.emulator import GeminiEmulator
from tests.pipeline.conftest import BATCH_KEY, DEFAULT_KEY, OpenCore, corpus


async def _vector_count(core: object) -> int:
    from asemantic import SemanticCore

    assert isinstance(core, SemanticCore)
    return len(await core.store.vector_rows())


def _embed_requests(emulator: GeminiEmulator) -> int:
    return sum(
        len(emulator.requests_to(e)) for e in ("models.embedContent", "models.batchEmbedContents")
    )


async def test_async_ingest_flush_sync_search(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    for source, text in corpus(12):
        result = await core.ingest(text, source=source, mode="async")
        assert result.mode is IngestMode.ASYNC
        assert result.chunks_pending == result.chunks_stored > 0
    counts = await core.store.count_chunks_by_status()
    assert counts["PENDING"] == 12 and counts["READY"] == 0
    assert await core.search("refund", k=3, mode="vector") == []  # nothing READY yet
    # Findable at once: keyword search (and hybrid, the default) finds the PENDING
    # chunks by their words before any vector exists, and says so.
    requests = _embed_requests(emulator)
    for mode in ("keyword", "hybrid"):
        found = await core.search("refund", k=3, mode=mode)
        assert sorted(hit.source for hit in found) == ["doc-1", "doc-7"]
        assert {hit.embedding_status for hit in found} == {EmbeddingStatus.PENDING}
        assert all(hit.distance is None and hit.found_by == ("keyword",) for hit in found)
    assert _embed_requests(emulator) == requests + 1  # keyword embeds nothing; hybrid its query

    manager = core.batch_manager
    job_ids = await manager.flush_queue(min_size=1)
    assert len(job_ids) == 1
    jobs = await core.batch_jobs.jobs()
    assert [j.status for j in jobs] == [JobStatus.SUBMITTED]
    assert jobs[0].remote_name and jobs[0].remote_name.startswith("batches/")

    report = await manager.sync_status()  # remote still PENDING
    assert report.polled == 1 and not report.completed
    emulator.advance(15)  # RUNNING
    await manager.sync_status()
    assert (await core.batch_jobs.jobs())[0].status is JobStatus.PROCESSING
    emulator.complete_all()
    report = await manager.sync_status()
    assert report.completed == job_ids
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.COMPLETED
    assert job.stats["sent"] == 12 and job.stats["succeeded"] == 12
    assert job.cleaned
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 12, "PENDING": 0, "FAILED": 0}
    assert await _vector_count(core) == 12
    assert await core.store.integrity_check() == "ok"

    hits = await core.search("refund", k=3)
    assert [hit.source for hit in hits[:2]] in (["doc-1", "doc-7"], ["doc-7", "doc-1"])
    assert hits[0].title == "Refund note 1" or hits[0].title == "Refund note 7"
    # Once the vectors arrived, the same chunks are found by meaning too.
    assert all(hit.found_by == ("vector", "keyword") for hit in hits[:2])
    assert {hit.embedding_status for hit in hits} == {EmbeddingStatus.READY}
    assert all(hit.distance is not None for hit in hits[:2])
    leftovers = emulator.remote_leftovers()
    assert not leftovers.files and not leftovers.batches


async def test_batch_calls_use_only_the_batch_key(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    for source, text in corpus(3):
        await core.ingest(text, source=source, mode="async")
    await core.ingest("# Sync\n\nonline refund text", source="sync-doc", mode="sync")
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    await core.search("refund")
    default = {r.endpoint for r in emulator.requests_with_key(DEFAULT_KEY)}
    batch = {r.endpoint for r in emulator.requests_with_key(BATCH_KEY)}
    assert default == {"models.batchEmbedContents"}
    assert "batches.create" in batch and "files.upload_start" in batch
    assert "models.batchEmbedContents" not in batch


async def test_batch_without_batch_key_is_refused_before_writing(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core(keyring=GoogleKeyring(DEFAULT_KEY))
    with pytest.raises(ValueError, match=r"^Batch operations require a dedicated API key$"):
        await core.ingest("some text to embed later", source="a", mode="async")
    assert await core.store.get_document("a") is None
    with pytest.raises(ValueError, match=r"^Batch operations require a dedicated API key$"):
        await core.batch_manager.flush_queue(force=True)
    with pytest.raises(ValueError, match=r"^Batch operations require a dedicated API key$"):
        await core.batch_manager.sync_status()
    assert emulator.requests == ()


async def test_below_min_size_nothing_happens_unless_forced(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    for source, text in corpus(3):
        await core.ingest(text, source=source, mode="async")
    assert await core.batch_manager.flush_queue(min_size=10) == []
    assert await core.batch_jobs.jobs() == []
    assert await core.batch_manager.flush_queue(min_size=10, force=True)


async def test_flush_splits_by_max_size(open_core: OpenCore, emulator: GeminiEmulator) -> None:
    core = await open_core()
    for source, text in corpus(25):
        await core.ingest(text, source=source, mode="async")
    job_ids = await core.batch_manager.flush_queue(min_size=1, max_size=10)
    assert len(job_ids) == 3
    sent = sorted(j.stats["sent"] for j in await core.batch_jobs.jobs())
    assert sent == [5, 10, 10]
    assert len(emulator.batches) == 3
    assert len({b.display_name for b in emulator.batches}) == 3
    # a second flush finds nothing queued
    assert await core.batch_manager.flush_queue(min_size=1) == []


async def test_hooks_see_every_transition_after_it_is_persisted(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    for source, text in corpus(4):
        await core.ingest(text, source=source, mode="async")
    seen: list[tuple[JobStatus, JobStatus, JobStatus | None]] = []

    async def hook(event: TransitionEvent) -> None:
        stored = await core.batch_jobs.get_job(event.job_id)
        seen.append((event.from_status, event.to_status, stored.status if stored else None))

    def broken(event: TransitionEvent) -> None:
        raise RuntimeError("a hook that fails")

    calls: list[str] = []
    core.batch_manager.on_transition(broken)
    core.batch_manager.on_transition(hook)
    core.batch_manager.on_transition(lambda e: calls.append(e.to_status.value))
    await core.batch_manager.flush_queue(min_size=1)
    emulator.advance(15)
    await core.batch_manager.sync_status()
    emulator.complete_all()
    await core.batch_manager.sync_status()
    S = JobStatus
    assert seen == [
        (S.CREATED, S.SUBMITTED, S.SUBMITTED),
        (S.SUBMITTED, S.PROCESSING, S.PROCESSING),
        (S.PROCESSING, S.COMPLETED, S.COMPLETED),
    ]
    assert calls == ["SUBMITTED", "PROCESSING", "COMPLETED"]
    (job,) = await core.batch_jobs.jobs()
    steps = await core.batch_jobs.transitions(job.job_id)
    assert [(t.from_status, t.to_status) for t in steps] == [
        (None, "CREATED"),
        ("CREATED", "SUBMITTED"),
        ("SUBMITTED", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
    ]


async def test_changed_text_discards_stale_results(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await core.ingest("# Plan\n\nold refund plan text", source="plan", mode="async")
    await core.batch_manager.flush_queue(min_size=1)
    # the document changes while its job runs: the old chunk is replaced
    await core.ingest("# Plan\n\nnew vacation plan text", source="plan", mode="async")
    emulator.complete_all()
    await core.batch_manager.sync_status()
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.COMPLETED
    assert job.stats["succeeded"] == 0
    counts = await core.store.count_chunks_by_status()
    assert counts["PENDING"] == 1 and counts["READY"] == 0
    # the new text goes through its own job
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    hits = await core.search("vacation plan", k=1)
    assert hits and "vacation" in hits[0].text
    assert await core.store.integrity_check() == "ok"


async def test_ready_status_default_and_sync_mode_needs_no_batch(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    result = await core.ingest("# Notes\n\ncertificate renewal", source="n", mode="sync")
    assert result.mode is IngestMode.SYNC and result.chunks_pending == 0
    assert (await core.store.count_chunks_by_status())[EmbeddingStatus.READY.value] == 1


async def test_stats_count_tokens_and_savings(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await core.ingest("# Sync\n\nrefund rules for invoices", source="s", mode="sync")
    for source, text in corpus(10):
        await core.ingest(text, source=source, mode="async")
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    await core.search("refund")
    stats = await core.stats()
    assert stats.documents == 11
    assert stats.chunks == {"READY": 11, "PENDING": 0, "FAILED": 0}
    assert stats.jobs["COMPLETED"] == 1
    cost = stats.cost
    assert cost.tokens_online > 0
    assert cost.tokens_batch > 10 * cost.tokens_online  # ten documents went by batch
    assert cost.tokens_query > 0
    assert cost.cost_batch_usd == pytest.approx(cost.tokens_batch * 0.075 / 1e6)
    assert cost.savings_usd == pytest.approx(cost.tokens_batch * 0.075 / 1e6)
    assert cost.savings_percent == pytest.approx(50.0)
