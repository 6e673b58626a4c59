"""Transition hooks through ``supervisor.on_transition``."""

from __future__ import annotations

import dataclasses
import logging

import anyio
import pytest

from asemantic import BatchSupervisor, JobStatus, TransitionEvent
from asemantic.testing.emulator import GeminiEmulator
from tests.supervisor.conftest import OpenCore, fast, ingest, keep_completing

S = JobStatus


async def test_hooks_run_in_order_isolated_on_frozen_events_after_the_commit(
    open_core: OpenCore, emulator: GeminiEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    core = await open_core()
    await ingest(core, 4)
    calls: list[tuple[str, str, S]] = []
    stored: list[tuple[S, S | None]] = []
    frozen: list[bool] = []
    events: list[TransitionEvent] = []

    def broken(event: TransitionEvent) -> None:
        calls.append(("broken", event.job_id, event.to_status))
        raise RuntimeError("a hook that fails")

    async def checks_the_database(event: TransitionEvent) -> None:
        calls.append(("async", event.job_id, event.to_status))
        await anyio.sleep(0.02)  # other jobs' events arrive meanwhile: they must wait
        record = await core.batch_jobs.get_job(event.job_id)
        stored.append((event.to_status, record.status if record else None))

    def tries_to_change(event: TransitionEvent) -> None:
        calls.append(("plain", event.job_id, event.to_status))
        events.append(event)
        try:
            event.to_status = S.FAILED  # type: ignore[misc]
        except dataclasses.FrozenInstanceError:
            frozen.append(True)

    supervisor = BatchSupervisor(core, fast(max_batch_size=2))
    assert supervisor.on_transition(broken) is broken
    supervisor.on_transition(checks_the_database)
    supervisor.on_transition(tries_to_change)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with supervisor:
                await supervisor.wait_until_idle()
            helpers.cancel_scope.cancel()

    # every event reached every hook, in registration order, despite the broken one
    assert len(calls) == 3 * len(events) and len(events) == 2 * 3
    for i in range(0, len(calls), 3):
        assert [c[0] for c in calls[i : i + 3]] == ["broken", "async", "plain"]
        assert len({c[1:] for c in calls[i : i + 3]}) == 1
    # per job: SUBMITTED -> PROCESSING -> COMPLETED, each already in the database
    for job in await core.batch_jobs.jobs():
        mine = [e for e in events if e.job_id == job.job_id]
        assert [(e.from_status, e.to_status) for e in mine] == [
            (S.CREATED, S.SUBMITTED),
            (S.SUBMITTED, S.PROCESSING),
            (S.PROCESSING, S.COMPLETED),
        ]
        assert all(e.remote_name == job.remote_name for e in mine)
        assert mine[-1].stats["succeeded"] == 2 and mine[-1].at.tzinfo is not None
    assert stored == [(to, to) for to, _ in stored]
    assert frozen == [True] * len(events)
    with pytest.raises(TypeError):
        events[0].stats["sent"] = 0  # type: ignore[index]
    failures = [r for r in caplog.records if "hook failed" in r.getMessage()]
    assert len(failures) == len(events)
    assert all(r.levelno == logging.ERROR and r.exc_info for r in failures)
    assert supervisor.health.paused_reason is None
    assert (await core.store.count_chunks_by_status())["READY"] == 4


async def test_each_transition_is_announced_once(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 1)
    seen: list[S] = []
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(poll_interval=3600)) as supervisor:
            supervisor.on_transition(lambda e: seen.append(e.to_status))
            await supervisor.run_once()
    # the loop's first tick may have submitted before the hook existed; never twice
    assert seen in ([], [S.SUBMITTED])
    (job,) = await core.batch_jobs.jobs()
    steps = await core.batch_jobs.transitions(job.job_id)
    assert [t.to_status for t in steps] == ["CREATED", "SUBMITTED"]


async def test_hooks_belong_to_their_supervisor(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 1)
    first_seen: list[S] = []
    second_seen: list[S] = []
    first = BatchSupervisor(core, fast(poll_interval=3600))
    first.on_transition(lambda e: first_seen.append(e.to_status))
    with anyio.fail_after(10):
        async with first:
            await first.run_once()
        assert first_seen == [S.SUBMITTED]
        emulator.complete_all()
        await core.batch_manager.sync_status()  # after it stopped: not its business
        assert first_seen == [S.SUBMITTED]
        assert len(core.batch_manager.hooks) == 0

        await ingest(core, 1, start=1)
        second = BatchSupervisor(core, fast(poll_interval=3600))
        second.on_transition(lambda e: second_seen.append(e.to_status))
        await second.run_once()  # outside the block: hooks for that one tick
        assert second_seen == [S.SUBMITTED]
        assert first_seen == [S.SUBMITTED]
        assert len(core.batch_manager.hooks) == 0
