"""The supervisor end to end: ingest async -> jobs -> READY -> search; stopping and resuming."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from asemantic import (
    BatchSupervisor,
    EmbeddingStatus,
    GoogleKeyring,
    JobStatus,
    SemanticCore,
    SqliteStore,
    SupervisorLeaseError,
)
from asemantic.ports import JobStore, Lease
from asemantic.testing.emulator import GeminiEmulator, RealClock
from tests.supervisor.conftest import (
    DEFAULT_KEY,
    OpenCore,
    eventually,
    fast,
    ingest,
    job_statuses,
    keep_completing,
    lease_row,
    vector_counts,
)
from tests.support import replace_job_methods, sqlite_of, sqlite_only


async def _check_done(core: SemanticCore, emulator: GeminiEmulator, n: int) -> None:
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": n, "PENDING": 0, "FAILED": 0}
    assert await vector_counts(core) == (n, n)
    assert await core.store.integrity_check() == "ok"
    assert not emulator.remote_leftovers()


async def test_drives_async_chunks_to_ready_then_search_finds_them(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 12)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast()) as supervisor:
                await supervisor.wait_until_idle()
                health = supervisor.health
            helpers.cancel_scope.cancel()
    assert health.running and health.ticks >= 1
    assert health.paused_reason is None and health.failures == 0
    assert not supervisor.health.running
    await _check_done(core, emulator, 12)
    hits = await core.search("refund", k=2)
    assert {hit.source for hit in hits} == {"doc-1", "doc-7"}
    assert await lease_row(core) is None


async def test_real_clock_jobs_finish_on_their_own(open_core: OpenCore) -> None:
    server = GeminiEmulator(clock=RealClock(), pending_seconds=0.02, running_seconds=0.03)
    core = await open_core(server=server)
    await ingest(core, 5)
    with anyio.fail_after(20):
        async with BatchSupervisor(core, fast(max_batch_size=2)) as supervisor:
            await supervisor.wait_until_idle()
    await _check_done(core, server, 5)
    assert await job_statuses(core) == [JobStatus.COMPLETED] * 3


async def test_wait_until_idle_without_work_returns_at_once(open_core: OpenCore) -> None:
    core = await open_core()
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(poll_interval=3600)) as supervisor:
            await supervisor.wait_until_idle()


async def test_wait_until_idle_refuses_when_not_running(open_core: OpenCore) -> None:
    core = await open_core()
    supervisor = BatchSupervisor(core, fast())
    await supervisor.wait_until_idle()  # nothing to do: fine even when stopped
    await ingest(core, 1)
    with pytest.raises(RuntimeError, match="not running"):
        await supervisor.wait_until_idle()


async def test_a_waiter_is_told_when_the_supervisor_stops(open_core: OpenCore) -> None:
    core = await open_core()
    await ingest(core, 2)  # the remote jobs never finish: the clock does not move
    errors: list[str] = []

    async def waiter(supervisor: BatchSupervisor) -> None:
        try:
            await supervisor.wait_until_idle()
        except RuntimeError as exc:
            errors.append(str(exc))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group, BatchSupervisor(core, fast()) as sup:
            group.start_soon(waiter, sup)

            async def submitted() -> bool:
                return await job_statuses(core) == [JobStatus.SUBMITTED]

            await eventually(submitted)
    assert errors == ["the supervisor is not running"]


async def test_graceful_stop_leaves_remote_jobs_for_the_next_supervisor(
    open_core: OpenCore, emulator: GeminiEmulator, db_path: Path
) -> None:
    core = await open_core()
    await ingest(core, 10)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(max_batch_size=4), owner="first"):

            async def submitted() -> bool:
                return await job_statuses(core) == [JobStatus.SUBMITTED] * 3

            await eventually(submitted)
            assert await lease_row(core) is not None
    # left promptly (the remote jobs are still PENDING) and released the lease
    assert await lease_row(core) is None
    assert await job_statuses(core) == [JobStatus.SUBMITTED] * 3
    remote = emulator.batches
    assert len(remote) == 3 and not any(batch.done for batch in remote)
    assert {batch.state for batch in remote} == {"BATCH_STATE_PENDING"}
    assert not emulator.requests_to("batches.cancel")
    assert not emulator.requests_to("batches.delete")
    await core.aclose()

    emulator.complete_all()
    again = await open_core(db_path)
    with anyio.fail_after(10):
        async with BatchSupervisor(again, fast(), owner="second") as supervisor:
            await supervisor.wait_until_idle()
    await _check_done(again, emulator, 10)
    assert [r.status for r in emulator.requests_to("batches.create")] == [200] * 3
    assert await job_statuses(again) == [JobStatus.COMPLETED] * 3


def _writer_is_free(path: Path) -> None:
    """A new write transaction from another connection starts at once (no lock held)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


_IN_SQLITE_WRITE = sqlite_only(
    "hangs inside the SQLite adapter's results transaction (SqliteStore.apply_vectors) "
    "and checks SQLite's write lock is free afterwards"
)


@pytest.fixture
def blocked_apply(monkeypatch: pytest.MonkeyPatch) -> tuple[anyio.Event, anyio.Event]:
    """Make applying vectors hang inside its transaction until ``release`` is set."""
    entered, release = anyio.Event(), anyio.Event()
    original = SqliteStore.apply_vectors

    async def apply_vectors(self: SqliteStore, conn: Any, mapping: Any, **options: Any) -> int:
        written = await original(self, conn, mapping, **options)  # vectors, READY: uncommitted
        entered.set()
        await release.wait()
        return written

    monkeypatch.setattr(SqliteStore, "apply_vectors", apply_vectors)
    return entered, release


@_IN_SQLITE_WRITE
async def test_stop_during_a_write_rolls_it_back_and_unlocks(
    open_core: OpenCore,
    emulator: GeminiEmulator,
    db_path: Path,
    blocked_apply: tuple[anyio.Event, anyio.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, _ = blocked_apply
    core = await open_core()
    await ingest(core, 6)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(stop_timeout=0.05)):
                await entered.wait()  # the results' transaction is open now
            helpers.cancel_scope.cancel()
    # rolled back as a whole: nothing applied, the job still waits for its results
    assert await lease_row(core) is None
    assert (await core.store.count_chunks_by_status())["PENDING"] == 6
    assert await vector_counts(core) == (0, 0)
    assert await job_statuses(core) == [JobStatus.PROCESSING]
    _writer_is_free(db_path)
    with anyio.fail_after(2):
        async with sqlite_of(core).transaction() as conn:
            await conn.execute("SELECT 1")
    assert await core.store.integrity_check() == "ok"

    monkeypatch.undo()
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast()) as supervisor:
            await supervisor.wait_until_idle()
    await _check_done(core, emulator, 6)


@_IN_SQLITE_WRITE
async def test_stop_lets_the_write_in_progress_finish(
    open_core: OpenCore,
    emulator: GeminiEmulator,
    blocked_apply: tuple[anyio.Event, anyio.Event],
) -> None:
    entered, release = blocked_apply
    core = await open_core()
    await ingest(core, 4)

    async def release_soon() -> None:
        await anyio.sleep(0.05)
        release.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(stop_timeout=8)):
                await entered.wait()
                helpers.start_soon(release_soon)
            # the block was left while the write waited: it was allowed to finish
            helpers.cancel_scope.cancel()
    assert await job_statuses(core) == [JobStatus.COMPLETED]
    assert (await core.store.count_chunks_by_status())["READY"] == 4
    assert await vector_counts(core) == (4, 4)
    assert await lease_row(core) is None


@_IN_SQLITE_WRITE
async def test_cancelling_the_host_skips_the_grace_period(
    open_core: OpenCore,
    emulator: GeminiEmulator,
    db_path: Path,
    blocked_apply: tuple[anyio.Event, anyio.Event],
) -> None:
    entered, _ = blocked_apply
    core = await open_core()
    await ingest(core, 3)
    with anyio.fail_after(5):  # far below stop_timeout: no grace on cancellation
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            with anyio.CancelScope() as scope:
                async with BatchSupervisor(core, fast(stop_timeout=60)):
                    await entered.wait()
                    scope.cancel()
                    await anyio.sleep_forever()
            helpers.cancel_scope.cancel()
    assert scope.cancelled_caught
    assert await lease_row(core) is None
    assert (await core.store.count_chunks_by_status())["PENDING"] == 3
    _writer_is_free(db_path)


async def test_run_once_outside_the_block_takes_the_lease_for_the_tick(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 3)
    supervisor = BatchSupervisor(core, fast())
    report = await supervisor.run_once()
    assert report.polled == 1 and await job_statuses(core) == [JobStatus.SUBMITTED]
    assert await lease_row(core) is None
    async with BatchSupervisor(core, fast(poll_interval=3600), owner="holder"):
        with pytest.raises(SupervisorLeaseError, match="holder"):
            await supervisor.run_once()
    emulator.complete_all()
    report = await supervisor.run_once()
    assert report.completed and await job_statuses(core) == [JobStatus.COMPLETED]


async def test_run_once_while_running_serialises_with_the_loop(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 3)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(poll_interval=3600)) as supervisor:
            first = await supervisor.run_once()  # before or after the loop's first tick
            assert first.polled == 1
            emulator.complete_all()
            await supervisor.run_once()  # after the loop's first tick, or instead of it
    assert await job_statuses(core) == [JobStatus.COMPLETED]
    assert len(emulator.requests_to("batches.create")) == 1


async def test_enter_again_after_exit_and_not_twice_at_once(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    supervisor = BatchSupervisor(core, fast())
    with anyio.fail_after(10):
        async with supervisor:
            with pytest.raises(RuntimeError, match="already running"):
                await supervisor.__aenter__()
        await ingest(core, 2)
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with supervisor:
                await supervisor.wait_until_idle()
            helpers.cancel_scope.cancel()
        await supervisor.aclose()  # idempotent
    assert (await core.store.count_chunks_by_status())[EmbeddingStatus.READY.value] == 2


async def test_entering_from_two_tasks_at_once_is_refused(open_core: OpenCore) -> None:
    core = await open_core()
    supervisor = BatchSupervisor(core, fast(poll_interval=3600))
    outcomes: list[str] = []

    async def enter() -> None:
        try:
            async with supervisor:
                await anyio.sleep(0.1)
        except RuntimeError as exc:
            outcomes.append(str(exc))
        else:
            outcomes.append("ran")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(enter)
            group.start_soon(enter)
    assert sorted(outcomes) == ["ran", "this supervisor is already running"]
    assert await lease_row(core) is None


async def test_without_a_batch_key_it_refuses_to_start(open_core: OpenCore) -> None:
    core = await open_core(keyring=GoogleKeyring(DEFAULT_KEY))
    with pytest.raises(ValueError, match=r"^Batch operations require a dedicated API key$"):
        BatchSupervisor(core)
    assert await lease_row(core) is None


@_IN_SQLITE_WRITE
async def test_an_asyncio_timeout_around_the_block_stops_it_promptly(
    open_core: OpenCore,
    emulator: GeminiEmulator,
    db_path: Path,
    blocked_apply: tuple[anyio.Event, anyio.Event],
) -> None:
    entered, _ = blocked_apply
    core = await open_core()
    await ingest(core, 2)

    async def supervise_briefly() -> None:
        async with asyncio.timeout(0.5), BatchSupervisor(core, fast(stop_timeout=60)):
            await entered.wait()
            await asyncio.sleep(30)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            with pytest.raises(TimeoutError):
                await supervise_briefly()
            helpers.cancel_scope.cancel()
    assert await lease_row(core) is None
    assert (await core.store.count_chunks_by_status())["PENDING"] == 2
    _writer_is_free(db_path)


async def test_cancelled_while_taking_the_lease_leaves_no_lease_behind(
    open_core: OpenCore,
) -> None:
    committed = anyio.Event()

    async def slow_answer(real: JobStore, owner: str, *, ttl: float, now: float) -> Lease:
        lease = await real.acquire_lease(owner, ttl=ttl, now=now)  # committed
        committed.set()
        await anyio.sleep_forever()  # ... but the answer never arrives
        return lease

    core = await open_core(wrap=replace_job_methods(acquire_lease=slow_answer))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:

            async def enter() -> None:
                async with BatchSupervisor(core, fast()):
                    raise AssertionError("never entered")

            group.start_soon(enter)
            await committed.wait()
            assert await lease_row(core) is not None
            group.cancel_scope.cancel()
    assert await lease_row(core) is None


async def test_closing_the_core_under_a_running_supervisor_stops_it(
    open_core: OpenCore, caplog: pytest.LogCaptureFixture
) -> None:
    core = await open_core()
    await ingest(core, 2)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast()) as supervisor:

            async def submitted() -> bool:
                return bool(await core.batch_jobs.jobs())

            await eventually(submitted)
            await core.aclose()

            async def stopped() -> bool:
                return not supervisor.health.running

            await eventually(stopped)
            assert "closed" in (supervisor.health.last_error or "")
            assert supervisor.health.paused_reason is None
    assert "could not release the supervisor lease" in caplog.text
