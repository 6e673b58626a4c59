"""A full disk while writing: the transaction rolls back, nothing is lost, work resumes.

The disk is "filled" with ``PRAGMA max_page_count`` on the store's writer connection
(the one every write goes through): set to the file's current page count, any write
that needs a new page fails as it would on a full disk, and raising it again is the
space coming back.

SQLite only: about SQLite's file (its page limit standing for a full disk).
"""

from __future__ import annotations

import anyio
import pytest

from asemantic import (
    BatchSupervisor,
    JobStatus,
    SemanticCore,
    StoreError,
)
from tests.robustness.conftest import (
    OpenCore,
    RevocableEmulator,
    batch_texts_applied,
    check_contracts,
    corpus,
    eventually,
    table_counts,
    vector_counts,
)
from tests.support import fast_supervisor, sqlite_of, sqlite_only

pytestmark = sqlite_only("fills SQLite's file with PRAGMA max_page_count")

ROOMY = 1_073_741_823


async def _fill_disk(core: SemanticCore) -> None:
    async with sqlite_of(core).transaction() as conn:
        rows = list(await conn.execute_fetchall("PRAGMA page_count"))
        await conn.execute(f"PRAGMA max_page_count = {int(rows[0][0])}")


async def _free_disk(core: SemanticCore) -> None:
    async with sqlite_of(core).transaction() as conn:
        await conn.execute(f"PRAGMA max_page_count = {ROOMY}")


async def _ingest(core: SemanticCore, n: int, *, start: int = 0) -> None:
    for source, text in corpus(n, start=start, words=120):
        await core.ingest(text, source=source, mode="async")


async def _job_ready_to_apply(core: SemanticCore, emulator: RevocableEmulator) -> str:
    """A job moved to PROCESSING, whose results now wait remotely."""
    manager = core.batch_manager
    (job_id,) = await manager.flush_queue(min_size=1)
    emulator.advance(11)  # PENDING -> RUNNING
    await manager.sync_status()
    assert await _status(core, job_id) is JobStatus.PROCESSING
    emulator.complete_all()
    return job_id


async def _status(core: SemanticCore, job_id: str) -> JobStatus:
    record = await core.batch_jobs.get_job(job_id)
    assert record is not None
    return record.status


async def _still_applicable(core: SemanticCore, job_id: str, n: int) -> None:
    assert await _status(core, job_id) is JobStatus.PROCESSING
    assert await core.store.count_chunks_by_status() == {"READY": 0, "PENDING": n, "FAILED": 0}
    assert await vector_counts(core) == (0, 0)
    assert await batch_texts_applied(core) == 0
    assert await core.store.integrity_check() == "ok"


async def test_sync_status_on_a_full_disk_rolls_back_then_finishes(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 30)
    job_id = await _job_ready_to_apply(core, emulator)
    await _fill_disk(core)
    # StoreError is the contract; an ExceptionGroup is what comes today (see below).
    with pytest.raises((StoreError, ExceptionGroup)) as caught:
        await core.batch_manager.sync_status()
    assert "sqlite" in repr(caught.value).lower()
    await _still_applicable(core, job_id, 30)
    # A second pass on a disk still full changes nothing either.
    with pytest.raises((StoreError, ExceptionGroup)):
        await core.batch_manager.sync_status()
    await _still_applicable(core, job_id, 30)
    await _free_disk(core)
    report = await core.batch_manager.sync_status()
    assert report.completed == [job_id]
    assert await core.store.count_chunks_by_status() == {"READY": 30, "PENDING": 0, "FAILED": 0}
    assert await batch_texts_applied(core) == 30
    await check_contracts(core, emulator)


async def test_sync_status_on_a_full_disk_raises_store_error(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 30)
    await _job_ready_to_apply(core, emulator)
    await _fill_disk(core)
    with pytest.raises(StoreError):
        await core.batch_manager.sync_status()


async def test_flush_queue_on_a_failing_disk_raises_store_error(open_core: OpenCore) -> None:
    core = await open_core()
    await _ingest(core, 3)
    async with sqlite_of(core).transaction() as conn:
        await conn.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON batch_jobs "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    before = await table_counts(core)
    with pytest.raises(StoreError):
        await core.batch_manager.flush_queue(min_size=1)
    assert await table_counts(core) == before


async def test_the_supervisor_pauses_on_a_full_disk_and_finishes_once_space_returns(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    core = await open_core()
    await _ingest(core, 20)
    with anyio.fail_after(30):
        async with BatchSupervisor(
            core, fast_supervisor(pause_initial=0.01, pause_max=0.05)
        ) as supervisor:

            async def processing() -> bool:
                jobs = await core.batch_jobs.jobs()
                return bool(jobs) and all(j.status is JobStatus.PROCESSING for j in jobs)

            async def submitted() -> bool:
                jobs = await core.batch_jobs.jobs()
                return bool(jobs) and all(j.status is JobStatus.SUBMITTED for j in jobs)

            await eventually(submitted)
            emulator.advance(11)  # the job runs; the supervisor moves it to PROCESSING
            await eventually(processing)
            (job,) = await core.batch_jobs.jobs()
            await _fill_disk(core)
            emulator.complete_all()

            async def paused() -> bool:
                return supervisor.health.paused_reason is not None

            await eventually(paused)
            health = supervisor.health
            assert health.running and health.failures >= 1
            await _still_applicable(core, job.job_id, 20)
            await _free_disk(core)
            await supervisor.wait_until_idle()
            assert supervisor.health.paused_reason is None
    assert "sqlite" in (health.paused_reason or "").lower()
    assert await core.store.count_chunks_by_status() == {"READY": 20, "PENDING": 0, "FAILED": 0}
    assert await batch_texts_applied(core) == 20
    await check_contracts(core, emulator)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ingest_on_a_full_disk_raises_store_error_and_writes_nothing(
    open_core: OpenCore, mode: str
) -> None:
    core = await open_core()
    await _ingest(core, 2)
    before = await table_counts(core)
    await _fill_disk(core)
    big = "# Big\n\n" + " ".join(f"word{i}" for i in range(6_000))
    with pytest.raises(StoreError):
        await core.ingest(big, source="big", mode=mode)
    after = await table_counts(core)
    assert {t: n for t, n in after.items() if not t.startswith("usage_")} == {
        t: n for t, n in before.items() if not t.startswith("usage_")
    }
    await _free_disk(core)
    result = await core.ingest(big, source="big", mode=mode)
    assert result.chunks_stored >= 5
    assert await core.store.integrity_check() == "ok"
