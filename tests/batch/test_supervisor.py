"""BatchSupervisor built from a BatchManager, and one pass's reads, on MemoryBatchBackend."""

from __future__ import annotations

import anyio
import pytest

from asemantic.batch.manager import BatchManager
from asemantic.batch.supervisor import BatchSupervisor, SupervisorConfig
from asemantic.domain.events import TransitionEvent
from asemantic.domain.jobs import JobStatus
from asemantic.keys import GoogleKeyring
from asemantic.testing.backend import MemoryBatchBackend
from tests.batch.conftest import MakeManager, Opened

FAST = SupervisorConfig(
    poll_interval=0.01, jitter=0.0, min_batch_size=1, max_wait=0.0, lease_ttl=5.0, stop_timeout=2.0
)


async def test_one_pass_reads_the_remote_file_list_at_most_once(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(2)
    await manager.flush_queue(min_size=1)
    backend.complete_all()
    before = backend.calls["find_files_by_prefix"]
    view = await manager.read_view()
    await manager.reconcile(view=view)
    await manager.flush_queue(min_size=1, view=view)
    report = await manager.sync_status(view=view)
    assert report.cleaned == 1
    assert backend.calls["find_files_by_prefix"] - before == 1
    assert view.jobs() == []


async def test_run_once_flushes_then_completes_and_cleans(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(3)
    supervisor = BatchSupervisor(manager, FAST)
    await supervisor.run_once()
    assert len(backend.jobs) == 1
    backend.complete_all()
    await supervisor.run_once()
    assert await db.statuses() == ["READY", "READY", "READY"]
    assert backend.jobs == {} and backend.files == {}
    (job,) = await db.jobs.jobs()
    assert job.status is JobStatus.COMPLETED and job.cleaned


async def test_hooks_are_attached_only_while_running(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(1)
    supervisor = BatchSupervisor(manager, FAST)
    seen: list[JobStatus] = []

    def hook(event: TransitionEvent) -> None:
        seen.append(event.to_status)

    supervisor.on_transition(hook)
    assert len(manager.hooks) == 0
    await supervisor.run_once()
    assert seen == [JobStatus.SUBMITTED]
    assert len(manager.hooks) == 0
    async with supervisor:
        assert len(manager.hooks) == 1
    assert len(manager.hooks) == 0
    backend.complete_all()
    await manager.sync_status()  # not through the supervisor: its hook sees nothing
    assert seen[-1] is not JobStatus.COMPLETED


async def test_wait_until_idle_returns_once_everything_is_embedded(
    db: Opened, manager: BatchManager, backend: MemoryBatchBackend
) -> None:
    await db.seed(4)

    async def keep_completing() -> None:
        while True:
            backend.complete_all()
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as group:
        group.start_soon(keep_completing)
        async with BatchSupervisor(manager, FAST) as supervisor:
            with anyio.fail_after(10):
                await supervisor.wait_until_idle()
        group.cancel_scope.cancel()
    assert await db.statuses() == ["READY"] * 4
    assert backend.jobs == {} and backend.files == {}


async def test_wait_until_idle_needs_a_running_supervisor(
    db: Opened, manager: BatchManager
) -> None:
    await db.seed(1)
    with pytest.raises(RuntimeError, match="not running"):
        await BatchSupervisor(manager, FAST).wait_until_idle()


async def test_a_supervisor_needs_the_batch_key(
    db: Opened, make_manager: MakeManager, backend: MemoryBatchBackend
) -> None:
    manager = await make_manager(keys=GoogleKeyring("only-the-default-key"))
    with pytest.raises(ValueError, match="Batch operations require a dedicated API key"):
        BatchSupervisor(manager, FAST)
    assert sum(backend.calls.values()) == 0
