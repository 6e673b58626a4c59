"""Faults during the batch pipeline: nothing is lost, nothing is applied twice."""

from __future__ import annotations

from typing import Any

import pytest

from asemantic import GeminiBatchClient, JobStatus, SemanticCore
from asemantic.testing.emulator import (
    Fault,
    GeminiEmulator,
    JobFault,
    LineFault,
    ResultCorruption,
)
from tests.pipeline.conftest import OpenCore, corpus
from tests.support import vector_counts


async def _ingest(core: SemanticCore, n: int) -> None:
    for source, text in corpus(n):
        await core.ingest(text, source=source, mode="async")


async def _run_to_completion(core: SemanticCore, emulator: GeminiEmulator, rounds: int = 8) -> None:
    manager = core.batch_manager
    for _ in range(rounds):
        await manager.reconcile()
        await manager.flush_queue(min_size=1)
        emulator.complete_all()
        await manager.sync_status()
        counts = await core.store.count_chunks_by_status()
        active = await core.batch_jobs.jobs(
            (JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.PROCESSING)
        )
        if not counts["PENDING"] and not active and not await core.batch_jobs.jobs(uncleaned=True):
            return
    raise AssertionError("the pipeline did not settle")


async def _check_invariants(core: SemanticCore, emulator: GeminiEmulator) -> None:
    assert await core.store.integrity_check() == "ok"
    for chunk in await core.store.chunk_records():
        if chunk.status != "READY":
            assert chunk.status == "FAILED" and chunk.error_message, chunk
    assert not emulator.remote_leftovers()


async def test_partial_failure_5_of_100_lines(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 100)
    emulator.faults.add(LineFault(code=400, fraction=0.05, message="text rejected"))
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 95, "PENDING": 0, "FAILED": 5}
    messages = [c.error_message for c in await core.store.chunk_records() if c.status == "FAILED"]
    assert len(messages) == 5
    assert all(m and "400" in m and "text rejected" in m for m in messages)
    job = (await core.batch_jobs.jobs())[0]
    assert job.stats["succeeded"] == 95 and job.stats["failed"] == 5
    await _check_invariants(core, emulator)


async def test_retryable_line_errors_go_back_to_the_queue(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 20)
    emulator.faults.add(LineFault(code=503, fraction=0.25))
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 15, "PENDING": 5, "FAILED": 0}
    pending = [c for c in await core.store.chunk_records() if c.status == "PENDING"]
    assert len(pending) == 5
    assert all(c.attempts == 1 and c.job_id is None for c in pending)
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 20
    await _check_invariants(core, emulator)


async def test_retry_budget_is_spent_then_failed(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 4)
    emulator.faults.add(LineFault(code=500, fraction=1.0, times=10))
    await _run_to_completion(core, emulator)
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 0, "PENDING": 0, "FAILED": 4}
    attempts = {c.attempts for c in await core.store.chunk_records()}
    assert attempts == {core.batch_manager.retry_policy.max_attempts}
    await _check_invariants(core, emulator)


@pytest.mark.parametrize("outcome", ["FAILED", "EXPIRED", "CANCELLED"])
async def test_jobs_that_end_badly_hand_chunks_back(
    open_core: OpenCore, emulator: GeminiEmulator, outcome: str
) -> None:
    core = await open_core()
    await _ingest(core, 6)
    emulator.faults.add(JobFault(outcome=outcome))  # type: ignore[arg-type]
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    report = await core.batch_manager.sync_status()
    assert len(report.failed) == 1
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.FAILED and job.error_message
    counts = await core.store.count_chunks_by_status()
    assert counts["PENDING"] == 6
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 6
    await _check_invariants(core, emulator)


@pytest.mark.parametrize(
    "endpoint",
    ["files.upload_start", "files.upload_chunk", "batches.get", "files.download", "files.delete"],
)
@pytest.mark.parametrize("status", [429, 503])
async def test_transient_errors_on_idempotent_calls(
    open_core: OpenCore, emulator: GeminiEmulator, endpoint: str, status: int
) -> None:
    core = await open_core()
    await _ingest(core, 5)
    emulator.faults.add(Fault(endpoint=endpoint, status=status, times=2))
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 5
    assert len(emulator.batches) == 0  # deleted after the local commit
    assert len(emulator.requests_to("batches.create")) == 1
    await _check_invariants(core, emulator)


@pytest.mark.parametrize("status", [429, 503])
async def test_errors_on_create_never_make_two_jobs(
    open_core: OpenCore, emulator: GeminiEmulator, status: int
) -> None:
    core = await open_core()
    await _ingest(core, 5)
    emulator.faults.add(Fault(endpoint="batches.create", status=status))
    assert len(await core.batch_manager.flush_queue(min_size=1)) == 1
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.CREATED  # left for reconcile
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 5
    created = [r for r in emulator.requests_to("batches.create") if r.status == 200]
    assert len(created) == 1
    await _check_invariants(core, emulator)


async def test_lost_create_response_is_adopted_not_duplicated(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 5)
    emulator.faults.add(Fault(endpoint="batches.create", lose_response=True))
    await core.batch_manager.flush_queue(min_size=1)
    assert len(emulator.batches) == 1  # made remotely, answer lost
    assert (await core.batch_jobs.jobs())[0].status is JobStatus.CREATED
    adopted = await core.batch_manager.reconcile()
    assert len(adopted) == 1
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.SUBMITTED and job.remote_name == emulator.batches[0].name
    assert len(emulator.batches) == 1
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 5
    await _check_invariants(core, emulator)


async def test_malformed_lines_and_unknown_keys(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 10)
    emulator.faults.add(
        ResultCorruption(
            garbage_lines=2,
            blank_lines=2,
            unknown_key_lines=3,
            unknown_fields=True,
            missing_lines=2,
        )
    )
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    job = (await core.batch_jobs.jobs())[0]
    assert job.status is JobStatus.COMPLETED
    assert job.stats["malformed"] == 2 and job.stats["unknown_keys"] == 3
    assert job.stats["missing"] == 2
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 8, "PENDING": 2, "FAILED": 0}  # missing lines are retried
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 10
    await _check_invariants(core, emulator)


async def test_sixty_jobs_polled_concurrently_at_most_fifty(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 60)
    job_ids = await core.batch_manager.flush_queue(min_size=1, max_size=1)
    assert len(job_ids) == 60
    emulator.clear_requests()
    emulator.faults.add(Fault(endpoint="batches.get", latency=0.05, times=60))
    report = await core.batch_manager.sync_status()
    assert report.polled == 60
    assert len(emulator.requests_to("batches.get")) == 60
    assert 2 <= emulator.peak_in_flight("batches.get") <= 50
    assert emulator.peak_in_flight("batches.get") == 50


async def test_restart_in_the_middle_resumes_without_duplicates(
    open_core: OpenCore, emulator: GeminiEmulator, tmp_path: object
) -> None:
    core = await open_core()
    await _ingest(core, 30)
    await core.batch_manager.flush_queue(min_size=1, max_size=10)
    emulator.advance(15)
    await core.batch_manager.sync_status()
    await core.aclose()  # jobs still running remotely
    emulator.complete_all()
    again = await open_core()
    await _run_to_completion(again, emulator)
    assert (await again.store.count_chunks_by_status())["READY"] == 30
    assert await vector_counts(again) == (30, 30)
    assert len(emulator.requests_to("batches.create")) == 3
    await _check_invariants(again, emulator)


async def _race_a_create(
    monkeypatch: pytest.MonkeyPatch, other: SemanticCore, *, before: bool
) -> None:
    """On the next create only, run ``other``'s reconcile (a second supervisor that took
    over) before the create is sent (``before``) or after it landed: the job moves on
    while the first manager's create is in flight."""
    original = GeminiBatchClient.create_embedding_job
    raced = False

    async def racing(self: GeminiBatchClient, lines: Any, *, display_name: str) -> Any:
        nonlocal raced
        if raced:
            return await original(self, lines, display_name=display_name)
        raced = True
        if before:
            await other.batch_manager.reconcile()
        remote = await original(self, lines, display_name=display_name)
        if not before:
            await other.batch_manager.reconcile()
        return remote

    monkeypatch.setattr(GeminiBatchClient, "create_embedding_job", racing)


async def test_a_create_that_lands_after_its_job_was_resubmitted_is_deleted(
    open_core: OpenCore, emulator: GeminiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another manager resubmitted the job while our create was in flight (our lease ran
    out): ours becomes a duplicate remote job and is cancelled and deleted, with its
    input file, instead of running on unread."""
    core = await open_core()
    other = await open_core()
    await _ingest(core, 5)
    await _race_a_create(monkeypatch, other, before=True)
    await core.batch_manager.flush_queue(min_size=1)
    assert len([r for r in emulator.requests_to("batches.create") if r.status == 200]) == 2
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED
    assert [b.name for b in emulator.batches] == [job.remote_name]  # the other's, only
    assert [r.status for r in emulator.requests_to("batches.cancel")] == [200]
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 5
    await _check_invariants(core, emulator)


async def test_a_create_adopted_by_another_manager_is_kept(
    open_core: OpenCore, emulator: GeminiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another manager adopted our remote job by its display name before we recorded it:
    it is the job's own, and stays."""
    core = await open_core()
    other = await open_core()
    await _ingest(core, 5)
    await _race_a_create(monkeypatch, other, before=False)
    await core.batch_manager.flush_queue(min_size=1)
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED
    assert [b.name for b in emulator.batches] == [job.remote_name]
    assert not emulator.requests_to("batches.cancel")
    assert not emulator.requests_to("batches.delete")
    await _run_to_completion(core, emulator)
    assert (await core.store.count_chunks_by_status())["READY"] == 5
    await _check_invariants(core, emulator)
