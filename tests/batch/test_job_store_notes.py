"""The JobStore additions the quota and wait policies rely on, on every engine:
``note_job``, ``shrink_job``, ``pending_chunks`` and the learned ``job_token_limit``;
and the manager on them with MemoryBatchBackend (a refused create reuses its input)."""

from __future__ import annotations

import anyio

from asemantic.batch.limits import CREATE_REFUSALS, RETRY_AT, JobLimits
from asemantic.batch.manager import BatchManager
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.errors import RateLimitError
from asemantic.ports import JobNote
from asemantic.testing.backend import MemoryBatchBackend
from tests.batch.conftest import KEYS, Opened


async def _one_job(db: Opened, chunks: int) -> str:
    await db.seed(chunks)
    queued = await db.jobs.queued_chunks()
    record = await db.jobs.create_job(
        job_id="job-1", display_name="asemantic-x-job-1", chunk_ids=[c.chunk_id for c in queued]
    )
    assert record is not None
    return record.job_id


async def test_note_job_sets_stats_and_the_input_file_and_compares_the_status(db: Opened) -> None:
    job_id = await _one_job(db, 3)
    noted = await db.jobs.note_job(
        JobNote(job_id=job_id, expected=JobStatus.CREATED, stats={"a": 1}, input_file="files/i")
    )
    assert noted is not None and noted.stats == {"a": 1} and noted.input_file == "files/i"
    kept = await db.jobs.note_job(JobNote(job_id=job_id, expected=JobStatus.CREATED))
    assert kept is not None and kept.stats == {"a": 1} and kept.input_file == "files/i"
    cleared = await db.jobs.note_job(
        JobNote(job_id=job_id, expected=JobStatus.CREATED, clear_input_file=True)
    )
    assert cleared is not None and cleared.input_file is None and cleared.stats == {"a": 1}
    stale = await db.jobs.note_job(
        JobNote(job_id=job_id, expected=JobStatus.SUBMITTED, stats={"b": 2})
    )
    assert stale is None
    record = await db.jobs.get_job(job_id)
    assert record is not None and record.stats == {"a": 1}


async def test_shrink_job_requeues_the_tail_with_attempts_unchanged(db: Opened) -> None:
    job_id = await _one_job(db, 5)
    before = await db.jobs.job_chunks(job_id)
    assert await db.jobs.shrink_job(job_id, keep=2) == 3
    after = await db.jobs.job_chunks(job_id)
    assert [c.chunk_id for c in after] == [c.chunk_id for c in before[:2]]
    queued = await db.jobs.queued_chunks()
    assert [c.chunk_id for c in queued] == [c.chunk_id for c in before[2:]]
    pending = await db.jobs.pending_chunks(limit=10)
    assert [c.chunk_id for c in pending] == [c.chunk_id for c in before]
    assert all(c.attempts == 0 for c in pending)
    assert [c.chunk_id for c in await db.jobs.pending_chunks(limit=2)] == [
        c.chunk_id for c in before[:2]
    ]


async def test_shrink_job_leaves_a_submitted_job_alone(db: Opened) -> None:
    from datetime import UTC, datetime

    from asemantic.ports import JobChange

    job_id = await _one_job(db, 3)
    moved = await db.jobs.transition_job(
        JobChange(
            job_id=job_id,
            expected=JobStatus.CREATED,
            to=JobStatus.SUBMITTED,
            at=datetime.now(UTC),
            remote_name="batches/x",
        )
    )
    assert moved is not None
    assert await db.jobs.shrink_job(job_id, keep=1) == 0
    assert len(await db.jobs.job_chunks(job_id)) == 3


async def test_the_learned_token_limit_is_kept_and_forgotten(db: Opened) -> None:
    assert await db.jobs.job_token_limit() is None
    await db.jobs.set_job_token_limit(5000)
    assert await db.jobs.job_token_limit() == 5000
    await db.jobs.set_job_token_limit(2500)
    assert await db.jobs.job_token_limit() == 2500
    await db.jobs.set_job_token_limit(None)
    assert await db.jobs.job_token_limit() is None


async def test_a_refused_create_reuses_the_uploaded_input(
    db: Opened, backend: MemoryBatchBackend
) -> None:
    manager = BatchManager(
        jobs=db.jobs,
        backend_factory=lambda: backend,
        keys=KEYS,
        retry=RetryPolicy(max_attempts=3),
        create_grace=0.0,
        limits=JobLimits(backoff_initial=0.001, backoff_max=0.001),
    )
    await db.seed(4)
    backend.script("create_embedding_job", RateLimitError("429", status=429), times=2)
    [job_id] = await manager.flush_queue(min_size=1)
    record = await db.jobs.get_job(job_id)
    assert record is not None and record.status is JobStatus.CREATED
    assert record.stats[CREATE_REFUSALS] == 1 and RETRY_AT in record.stats
    for _ in range(200):
        await anyio.sleep(0.005)  # past the 1 ms wait
        await manager.reconcile()
        record = await db.jobs.get_job(job_id)
        assert record is not None
        if record.status is JobStatus.SUBMITTED:
            break
    assert record.status is JobStatus.SUBMITTED
    assert backend.calls["upload_input"] == 1
    assert backend.calls["create_embedding_job"] == 3
    assert list(backend.files) == [record.input_file]
