"""Failures: a rejected key or a broken store pauses (without spinning) and recovers;
one failing job never stops the others."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from asemantic import BatchSupervisor, JobStatus, SemanticCore
from asemantic.errors import StoreError
from asemantic.ports import JobStore
from asemantic.testing.emulator import Fault, GeminiEmulator, JobFault
from tests.supervisor.conftest import (
    BATCH_KEY,
    DEFAULT_KEY,
    OpenCore,
    eventually,
    fast,
    ingest,
    job_statuses,
    keep_completing,
    vector_counts,
)
from tests.support import replace_job_methods, sqlite_of, sqlite_only


def _no_key_in(*texts: str | None) -> None:
    for text in texts:
        assert text is None or (BATCH_KEY not in text and DEFAULT_KEY not in text), text


async def _paused(supervisor: BatchSupervisor) -> bool:
    return supervisor.health.paused_reason is not None


async def test_a_rejected_key_pauses_with_a_clear_error_and_does_not_spin(
    open_core: OpenCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = GeminiEmulator(api_keys=["some-other-key"])
    core = await open_core(server=server)
    await ingest(core, 3)
    config = fast(poll_interval=0.005, jitter=0, pause_initial=0.02, pause_max=0.08)
    backoffs: list[float] = []
    with anyio.fail_after(10):
        async with BatchSupervisor(core, config) as supervisor:
            await eventually(lambda: _paused(supervisor))
            before = len(server.requests)
            with anyio.move_on_after(0.6):
                while True:  # waking it in a loop must not defeat the pause
                    supervisor.wake()
                    if (b := supervisor.health.backoff) is not None and b not in backoffs:
                        backoffs.append(b)
                    await anyio.sleep(0.001)
            during = len(server.requests) - before
            health = supervisor.health
    # at most one attempt per 80 ms once the delay is capped; a spin would be hundreds
    assert during <= 15, during
    assert backoffs == sorted(backoffs) and backoffs[-1] == pytest.approx(0.08)
    assert health.failures >= 4 and health.running
    assert health.paused_reason is not None
    assert "AuthenticationError" in health.paused_reason
    assert "API key" in health.paused_reason or "API_KEY" in health.paused_reason
    _no_key_in(health.paused_reason, health.last_error, caplog.text)
    assert all(r.status in (400, 401, 403) for r in server.requests)
    assert any(r.levelno == logging.ERROR and "paused" in r.getMessage() for r in caplog.records)
    # nothing was lost: the chunks wait for a working key
    assert (await core.store.count_chunks_by_status())["PENDING"] == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_recovers_once_the_auth_fault_is_gone(
    open_core: OpenCore, emulator: GeminiEmulator, status: int
) -> None:
    core = await open_core()
    await ingest(core, 4)
    emulator.faults.add(Fault(endpoint="*", status=status, times=4))
    seen_pause: list[str] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(pause_initial=0.01, pause_max=0.04)) as sup:
                await eventually(lambda: _paused(sup))
                seen_pause.append(sup.health.paused_reason or "")
                await sup.wait_until_idle()
                health = sup.health
            helpers.cancel_scope.cancel()
    assert "AuthenticationError" in seen_pause[0] and str(status) in seen_pause[0]
    _no_key_in(*seen_pause)
    assert health.paused_reason is None and health.failures == 0 and health.backoff is None
    assert health.last_error is not None  # remembered for the record
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": 4, "PENDING": 0, "FAILED": 0}
    assert [r.status for r in emulator.requests_to("batches.create")].count(200) == 1


async def _set_store_broken(core: SemanticCore, broken: bool) -> None:
    async with sqlite_of(core).transaction() as conn:
        if broken:
            await conn.execute(
                "CREATE TRIGGER refuse_jobs BEFORE INSERT ON batch_jobs "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        else:
            await conn.execute("DROP TRIGGER refuse_jobs")


class _Refusing:
    """A job store that refuses new jobs while ``broken``, as a full disk would."""

    def __init__(self) -> None:
        self.broken = True

    async def create_job(self, real: JobStore, **kwargs: Any) -> Any:
        if self.broken:
            raise StoreError("database or disk is full")
        return await real.create_job(**kwargs)


async def test_a_persistent_store_failure_pauses_then_recovers(
    open_core: OpenCore, emulator: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    refusing = _Refusing()
    core = await open_core(wrap=replace_job_methods(create_job=refusing.create_job))
    await ingest(core, 3)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(pause_initial=0.01, pause_max=0.04)) as sup:
                await eventually(lambda: _paused(sup))
                reason = sup.health.paused_reason or ""
                failures = sup.health.failures
                refusing.broken = False
                await sup.wait_until_idle()
                assert sup.health.paused_reason is None
            helpers.cancel_scope.cancel()
    assert "disk is full" in reason and failures >= 1
    logged = [r for r in caplog.records if r.name == "asemantic.batch.supervisor"]
    errors = [r for r in logged if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback, once
    assert (await core.store.count_chunks_by_status())["READY"] == 3
    assert await core.store.integrity_check() == "ok"


@sqlite_only("a real SQLite error (a trigger aborting like a full disk) from inside the file")
async def test_a_persistent_sqlite_failure_pauses_then_recovers(
    open_core: OpenCore, emulator: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core = await open_core()
    await ingest(core, 3)
    await _set_store_broken(core, True)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(pause_initial=0.01, pause_max=0.04)) as sup:
                await eventually(lambda: _paused(sup))
                reason = sup.health.paused_reason or ""
                failures = sup.health.failures
                await _set_store_broken(core, False)
                await sup.wait_until_idle()
                assert sup.health.paused_reason is None
            helpers.cancel_scope.cancel()
    assert "disk is full" in reason and failures >= 1
    logged = [r for r in caplog.records if r.name == "asemantic.batch.supervisor"]
    errors = [r for r in logged if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback, once
    assert (await core.store.count_chunks_by_status())["READY"] == 3
    assert await core.store.integrity_check() == "ok"


async def test_transient_provider_errors_back_off_without_pausing(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 2)
    emulator.faults.add(Fault(endpoint="files.list", status=503, times=6))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(pause_initial=0.01, pause_max=0.04)) as sup:

                async def backing_off() -> bool:
                    return sup.health.failures > 0

                await eventually(backing_off)
                health = sup.health
                await sup.wait_until_idle()
            helpers.cancel_scope.cancel()
    assert health.paused_reason is None  # transient: backed off, not paused
    assert health.last_error is not None and "503" in health.last_error
    assert (await core.store.count_chunks_by_status())["READY"] == 2


async def test_a_job_refused_at_create_does_not_stop_the_others(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 9)
    emulator.faults.add(Fault(endpoint="batches.create", status=400, times=1))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(max_batch_size=3)) as sup:
                await sup.wait_until_idle()
                assert sup.health.paused_reason is None
            helpers.cancel_scope.cancel()
    jobs = await core.batch_jobs.jobs()
    failed = [job for job in jobs if job.status is JobStatus.FAILED]
    assert len(failed) == 1 and "refused" in (failed[0].error_message or "")
    assert sorted(await job_statuses(core)).count(JobStatus.COMPLETED) == len(jobs) - 1
    assert (await core.store.count_chunks_by_status())["READY"] == 9
    assert await vector_counts(core) == (9, 9)


async def test_a_job_that_fails_remotely_does_not_stop_the_others(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 6)
    emulator.faults.add(JobFault(outcome="FAILED", times=1, message="quota"))
    completed: list[str] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            async with BatchSupervisor(core, fast(max_batch_size=2)) as sup:

                async def three_jobs() -> bool:
                    return len(await core.batch_jobs.jobs()) == 3

                await eventually(three_jobs)
                helpers.start_soon(keep_completing, emulator)
                sup.on_transition(
                    lambda e: (
                        completed.append(e.job_id) if e.to_status is JobStatus.COMPLETED else None
                    )
                )
                await sup.wait_until_idle()
            helpers.cancel_scope.cancel()
    statuses = await job_statuses(core)
    assert statuses.count(JobStatus.FAILED) == 1
    assert statuses.count(JobStatus.COMPLETED) == 3  # two first-round jobs and the retry
    assert len(completed) == 3
    assert (await core.store.count_chunks_by_status())["READY"] == 6


async def test_a_job_whose_apply_keeps_failing_does_not_stop_the_others(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    cursed: list[str] = []

    async def apply_results(real: JobStore, job_id: str, *args: Any, **kw: Any) -> Any:
        if not cursed:
            cursed.append(job_id)
        if job_id == cursed[0]:
            raise RuntimeError("this job's results break a bug in the code")
        return await real.apply_results(job_id, *args, **kw)

    core = await open_core(wrap=replace_job_methods(apply_results=apply_results))
    await ingest(core, 2)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(max_batch_size=1)) as sup:

                async def some_ticks() -> bool:
                    return sup.health.ticks + sup.health.failures >= 8

                await eventually(some_ticks)
                health = sup.health
            helpers.cancel_scope.cancel()
    assert (await job_statuses(core)).count(JobStatus.COMPLETED) == 1
    assert health.paused_reason is None


async def test_a_job_gone_remotely_is_failed_and_its_chunks_go_again(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 1)
    # The first poll of the submitted job is answered 404 (added before the supervisor
    # starts, so no poll already in flight can miss it; creates never poll).
    emulator.faults.add(Fault(endpoint="batches.get", status=404, times=1))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            async with BatchSupervisor(core, fast()) as sup:
                helpers.start_soon(keep_completing, emulator)
                await sup.wait_until_idle()
                assert sup.health.paused_reason is None
            helpers.cancel_scope.cancel()
    gets = [r.status for r in emulator.requests if r.endpoint == "batches.get"]
    assert gets[0] == 404
    assert await job_statuses(core) == [JobStatus.FAILED, JobStatus.COMPLETED]
    assert (await core.store.count_chunks_by_status())["READY"] == 1
