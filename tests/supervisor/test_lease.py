"""At most one supervisor per database: the lease, its renewal, waiting and take-over."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from asemantic import (
    BatchSupervisor,
    CoreConfig,
    EmbeddingSpace,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    SemanticCore,
    SupervisorLeaseError,
    TransitionEvent,
)
from asemantic.adapters.sqlite.connection import select_driver
from asemantic.testing.emulator import GeminiEmulator
from tests.supervisor.conftest import (
    OpenCore,
    eventually,
    fast,
    ingest,
    job_statuses,
    keep_completing,
    lease_row,
)

FROZEN_TTL = 0.5


async def _write_lease(core: SemanticCore, owner: str, expires_at: float) -> None:
    """Leave the lease to ``owner`` until ``expires_at``, as a crashed (or rogue) host
    would: taken through the port as of an hour after any live lease ran out."""
    now = max(time.time(), expires_at) + 3600.0
    # On PostgreSQL the take ends the holder's lock session; a live holder may lock
    # again before this session does (it renews every fraction of its short TTL), as a
    # live supervisor should. Like a host that keeps trying, try again.
    for _ in range(50):
        lease = await core.batch_jobs.acquire_lease(owner, ttl=expires_at - now, now=now)
        if lease.acquired:
            break
        await anyio.sleep(0.02)
    assert lease.acquired and lease.owner == owner
    assert lease.expires_at == pytest.approx(expires_at, abs=1e-3)


async def test_second_supervisor_is_refused_naming_the_holder(
    open_core: OpenCore, db_path: Path
) -> None:
    first_core = await open_core()
    second_core = await open_core(db_path)
    with anyio.fail_after(10):
        async with BatchSupervisor(first_core, fast(), owner="worker-a:1234"):
            second = BatchSupervisor(second_core, fast(lease_wait=0), owner="worker-b")
            with pytest.raises(SupervisorLeaseError, match=r"worker-a:1234") as caught:
                await second.__aenter__()
            assert "lease_wait" in str(caught.value)
            assert not second.health.running
            assert await lease_row(second_core) == await lease_row(first_core)
            assert (await lease_row(second_core) or ("",))[0] == "worker-a:1234"
        # the refused one opened nothing: the first one's exit leaves no lease behind
        assert await lease_row(second_core) is None


async def test_a_waiting_supervisor_takes_over_when_the_first_stops(
    open_core: OpenCore, emulator: GeminiEmulator, db_path: Path
) -> None:
    first_core = await open_core()
    second_core = await open_core(db_path)
    await ingest(first_core, 3)
    took_over = anyio.Event()

    async def second_supervisor() -> None:
        async with BatchSupervisor(second_core, fast(lease_wait=30), owner="second") as sup:
            took_over.set()
            await sup.wait_until_idle()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            async with BatchSupervisor(first_core, fast(), owner="first"):
                group.start_soon(second_supervisor)

                async def holds() -> bool:
                    row = await lease_row(first_core)
                    return row is not None and row[0] == "first"

                await eventually(holds)
                await anyio.sleep(0.3)  # the second one is polling the lease meanwhile
                assert not took_over.is_set()
            group.start_soon(keep_completing, emulator)
            await took_over.wait()
            assert (await lease_row(first_core) or ("",))[0] == "second"

            async def all_ready() -> bool:
                return (await second_core.store.count_chunks_by_status())["READY"] == 3

            await eventually(all_ready)
            group.cancel_scope.cancel()
    assert await lease_row(second_core) is None


async def test_an_expired_lease_of_a_crashed_owner_is_taken_over(open_core: OpenCore) -> None:
    core = await open_core()
    await _write_lease(core, "crashed-host:99", time.time() - 5)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(lease_wait=0), owner="new") as supervisor:
            assert supervisor.health.running
            assert (await lease_row(core) or ("",))[0] == "new"
    assert await lease_row(core) is None


async def test_a_live_lease_is_waited_for_until_it_expires(open_core: OpenCore) -> None:
    core = await open_core()
    await _write_lease(core, "frozen-host:7", time.time() + 0.3)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(lease_wait=10), owner="patient"):
            row = await lease_row(core)
            assert row is not None and row[0] == "patient"


async def test_lease_wait_gives_up_with_a_clear_error(open_core: OpenCore) -> None:
    core = await open_core()
    await _write_lease(core, "busy-host:8", time.time() + 60)
    with anyio.fail_after(10), pytest.raises(SupervisorLeaseError, match="busy-host:8"):
        async with BatchSupervisor(core, fast(lease_wait=0.1)):
            pass
    assert (await lease_row(core) or ("",))[0] == "busy-host:8"  # untouched


async def test_the_lease_is_renewed_while_running(open_core: OpenCore) -> None:
    core = await open_core()
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(lease_ttl=0.3), owner="renewer"):
            first = await lease_row(core)
            assert first is not None

            async def renewed() -> bool:
                row = await lease_row(core)
                return row is not None and row[0] == "renewer" and row[1] > first[1]

            await eventually(renewed)


async def test_a_lost_lease_stops_the_supervisor_and_says_why(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 2)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(lease_ttl=0.3), owner="victim") as supervisor:

            async def submitted() -> bool:
                return bool(await core.batch_jobs.jobs())

            await eventually(submitted)
            await _write_lease(core, "usurper:1", time.time() + 60)

            async def stopped() -> bool:
                return not supervisor.health.running

            await eventually(stopped)
            health = supervisor.health
            assert health.last_error is not None and "usurper:1" in health.last_error
            with pytest.raises(RuntimeError, match="usurper:1"):
                await supervisor.wait_until_idle()
            with pytest.raises(SupervisorLeaseError, match="usurper:1"):
                await supervisor.run_once()
    # leaving does not delete the new holder's lease
    assert (await lease_row(core) or ("",))[0] == "usurper:1"


def _creates(emulator: GeminiEmulator) -> int:
    return len(emulator.requests_to("batches.create"))


async def test_a_lease_taken_over_between_two_creates_of_a_pass_stops_the_pass(
    open_core: OpenCore, emulator: GeminiEmulator, db_path: Path
) -> None:
    """The process freezes after the first of three creates; another supervisor takes over.

    ``run_once`` outside the ``async with`` block has no keeper task, and the loop
    renews only between ticks: only the check before each create can notice.
    """
    core = await open_core()
    other = await open_core(db_path)
    await ingest(core, 3)
    supervisor = BatchSupervisor(core, fast(lease_ttl=FROZEN_TTL, max_batch_size=1), owner="A")
    taken: list[bool] = []

    @supervisor.on_transition
    async def freeze_then_take_over(event: TransitionEvent) -> None:
        if event.to_status is JobStatus.SUBMITTED and not taken:
            await anyio.sleep(FROZEN_TTL * 1.5)  # frozen: the lease runs out meanwhile
            lease = await other.batch_jobs.acquire_lease("B", ttl=60, now=time.time())
            taken.append(lease.acquired)

    with anyio.fail_after(10), pytest.raises(SupervisorLeaseError, match="taken over by B"):
        await supervisor.run_once()
    assert taken == [True]
    assert _creates(emulator) == 1
    assert sorted(await job_statuses(core)) == sorted(
        [JobStatus.SUBMITTED, JobStatus.CREATED, JobStatus.CREATED]
    )
    waiting = await core.batch_jobs.jobs((JobStatus.CREATED,))
    assert [job.create_attempted_at for job in waiting] == [None, None]  # nothing sent
    assert (await lease_row(core) or ("",))[0] == "B"
    assert "taken over by B" in (supervisor.health.last_error or "")


async def test_a_lease_run_out_mid_pass_defers_the_rest_to_the_next_tick(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    """Nobody took the lease: the pass sends no more creates, the next tick does."""
    core = await open_core()
    await ingest(core, 3)
    supervisor = BatchSupervisor(core, fast(lease_ttl=FROZEN_TTL, max_batch_size=1), owner="A")
    frozen: list[str] = []

    @supervisor.on_transition
    async def freeze(event: TransitionEvent) -> None:
        if event.to_status is JobStatus.SUBMITTED and not frozen:
            frozen.append(event.job_id)
            await anyio.sleep(FROZEN_TTL * 1.5)

    with anyio.fail_after(10):
        await supervisor.run_once()
        assert _creates(emulator) == 1
        assert supervisor.health.last_error is None
        assert await lease_row(core) is None  # renewed, then released after the tick
        await supervisor.run_once()
    assert _creates(emulator) == 3
    assert JobStatus.CREATED not in await job_statuses(core)


async def test_a_waiting_supervisor_rides_out_a_busy_database(
    db_path: Path,
    keys: GoogleKeyring,
    emulator: GeminiEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another process holds the write lock past ``busy_timeout`` while a supervisor
    takes its lease: with ``lease_wait`` left, it retries instead of failing.

    SQLite only: about SQLite's single write lock (``BEGIN IMMEDIATE`` of another
    connection) and its ``busy_timeout``."""
    core = await SemanticCore.open(
        db_path,
        keys=keys,
        config=CoreConfig(space=EmbeddingSpace(dimensions=768), busy_timeout_ms=50),
        gemini=GeminiSettings(base_url=emulator.base_url, transport=emulator.async_transport()),
    )
    holder = select_driver().module.connect(str(db_path), isolation_level=None)
    entered = anyio.Event()
    leave = anyio.Event()

    async def supervise() -> None:
        async with BatchSupervisor(core, fast(lease_wait=30), owner="patient"):
            entered.set()
            await leave.wait()

    def warned() -> bool:
        return any("database busy while taking" in r.getMessage() for r in caplog.records)

    try:
        holder.execute("BEGIN IMMEDIATE")
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(supervise)
                await eventually(warned)
                assert not entered.is_set()
                holder.execute("ROLLBACK")
                await entered.wait()
                assert (await lease_row(core) or ("",))[0] == "patient"
                leave.set()
    finally:
        holder.close()
        await core.aclose()
