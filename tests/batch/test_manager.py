"""BatchManager through its public API, on MemoryBatchBackend and a real JobStore."""

from __future__ import annotations

import pytest

from asemantic.batch.manager import BatchManager
from asemantic.domain.events import TransitionEvent
from asemantic.domain.jobs import JobStatus
from asemantic.errors import (
    AuthenticationError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
)
from asemantic.testing.backend import JobEnd, MemoryBatchBackend
from tests.batch.conftest import MakeManager, Opened


async def _job(db: Opened, job_id: str) -> JobStatus:
    record = await db.jobs.get_job(job_id)
    assert record is not None
    return record.status


async def test_flush_below_min_size_does_nothing_unless_forced(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(3)
    assert await manager.flush_queue(min_size=5) == []
    assert backend.calls["create_embedding_job"] == 0
    forced = await manager.flush_queue(min_size=5, force=True)
    assert len(forced) == 1
    assert len(backend.jobs) == 1


async def test_flush_at_min_size_submits_and_jobs_are_sized_by_max_size(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(5)
    ids = await manager.flush_queue(min_size=5, max_size=2)
    assert len(ids) == 3
    assert sorted(len(job.lines) for job in backend.jobs.values()) == [1, 2, 2]
    for job_id in ids:
        assert await _job(db, job_id) is JobStatus.SUBMITTED


async def test_the_job_row_is_committed_created_before_the_create(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    seen: list[JobStatus] = []

    async def check() -> bool:
        (record,) = await db.jobs.jobs([JobStatus.CREATED])
        seen.append(record.status)
        return True

    await manager.flush_queue(min_size=1, before_create=check)
    assert seen == [JobStatus.CREATED]
    assert backend.calls["create_embedding_job"] == 1


async def test_a_429_on_create_leaves_the_job_created(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    backend.script("create_embedding_job", RateLimitError("slow down", status=429))
    (job_id,) = await manager.flush_queue(min_size=1)
    assert await _job(db, job_id) is JobStatus.CREATED
    assert await db.statuses() == ["PENDING", "PENDING"]
    assert len(await db.jobs.job_chunks(job_id)) == 2
    assert backend.jobs == {}
    record = await db.jobs.get_job(job_id)
    assert record is not None and record.create_attempted_at is None


async def test_a_400_on_create_fails_the_job_and_hands_chunks_back(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    backend.script("create_embedding_job", ProviderRequestError("bad", status=400))
    (job_id,) = await manager.flush_queue(min_size=1)
    assert await _job(db, job_id) is JobStatus.FAILED
    assert len(await db.jobs.queued_chunks()) == 2


async def test_an_auth_error_on_create_propagates(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(1)
    backend.script("create_embedding_job", AuthenticationError("bad key", status=401))
    with pytest.raises(AuthenticationError):
        await manager.flush_queue(min_size=1)


async def test_a_lost_create_answer_is_adopted_by_reconcile(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    backend.script("create_embedding_job", ProviderUnavailableError("lost", status=503), lands=True)
    (job_id,) = await manager.flush_queue(min_size=1)
    lost = await db.jobs.get_job(job_id)
    assert lost is not None and lost.status is JobStatus.CREATED
    assert lost.create_attempted_at is not None
    assert await manager.reconcile() == [job_id]
    assert len(backend.jobs) == 1
    assert backend.calls["create_embedding_job"] == 1
    record = await db.jobs.get_job(job_id)
    assert record is not None and record.status is JobStatus.SUBMITTED
    assert record.remote_name in backend.jobs


async def test_success_applies_vectors_and_hooks_see_each_persisted_move(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(3)
    events: list[tuple[JobStatus, JobStatus, JobStatus]] = []

    async def hook(event: TransitionEvent) -> None:
        events.append((event.from_status, event.to_status, await _job(db, event.job_id)))

    manager.on_transition(hook)
    (job_id,) = await manager.flush_queue(min_size=1)
    backend.complete_all()
    report = await manager.sync_status()
    assert report.completed == [job_id]
    assert await db.statuses() == ["READY", "READY", "READY"]
    assert events == [
        (JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.SUBMITTED),
        (JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.COMPLETED),
    ]


@pytest.mark.parametrize("end", ["JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED"])
async def test_a_failed_remote_job_hands_chunks_back(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend, end: JobEnd
) -> None:
    await db.seed(2)
    (job_id,) = await manager.flush_queue(min_size=1)
    (name,) = backend.jobs
    backend.fail_job(name, end)
    report = await manager.sync_status()
    assert report.failed == [job_id]
    assert await _job(db, job_id) is JobStatus.FAILED
    assert await db.statuses() == ["PENDING", "PENDING"]
    (next_id,) = await manager.flush_queue(min_size=1)
    assert [c.attempts for c in await db.jobs.job_chunks(next_id)] == [1, 1]


async def test_chunks_fail_past_max_attempts(
    db: Opened, make_manager: MakeManager, backend: MemoryBatchBackend
) -> None:
    manager = await make_manager(max_attempts=1)
    await db.seed(2)
    await manager.flush_queue(min_size=1)
    (name,) = backend.jobs
    backend.fail_job(name)
    await manager.sync_status()
    assert await db.statuses() == ["FAILED", "FAILED"]
    assert await manager.flush_queue(min_size=1, force=True) == []


async def test_per_line_retryable_and_permanent_errors(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(3)
    (job_id,) = await manager.flush_queue(min_size=1)
    keys = [line.key for line in next(iter(backend.jobs.values())).lines]
    backend.fail_lines([keys[0]], code=503, status="UNAVAILABLE", message="try later")
    backend.fail_lines([keys[1]], code=400, status="INVALID_ARGUMENT", message="no")
    backend.complete_all()
    await manager.sync_status()
    assert await _job(db, job_id) is JobStatus.COMPLETED
    assert await db.statuses() == ["PENDING", "FAILED", "READY"]
    assert len(await db.jobs.queued_chunks()) == 1


async def test_cleanup_deletes_the_remote_job_and_files(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    await manager.flush_queue(min_size=1)
    backend.complete_all()
    report = await manager.sync_status()
    assert report.cleaned == 1
    assert backend.jobs == {}
    assert backend.files == {}
    assert await manager.cleanup_finished() == 0


async def test_no_batch_key_raises_before_anything_is_written(
    db: Opened, make_manager: MakeManager, backend: MemoryBatchBackend
) -> None:
    manager = await make_manager(keys=None)
    await db.seed(2)
    with pytest.raises(ValueError, match="Batch operations require a dedicated API key"):
        await manager.flush_queue(min_size=1)
    assert await db.jobs.jobs() == []
    assert sum(backend.calls.values()) == 0
