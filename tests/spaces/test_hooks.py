"""Transition hooks see the jobs of every embedding space, each event naming its space."""

from __future__ import annotations

import datetime

import pytest

from asemantic import BatchSupervisor, TransitionEvent
from asemantic.domain.jobs import JobStatus
from asemantic.errors import InvalidInputError
from asemantic.testing.emulator import GeminiEmulator
from tests.spaces.conftest import NEW, OpenCore
from tests.spaces.test_migration import MULTI_SPACE_ENGINES
from tests.support import corpus, fast_supervisor

_LIFE = [
    (JobStatus.CREATED, JobStatus.SUBMITTED),
    (JobStatus.SUBMITTED, JobStatus.PROCESSING),
    (JobStatus.PROCESSING, JobStatus.COMPLETED),
]


def _moves(events: list[TransitionEvent], space_id: int) -> list[tuple[JobStatus, JobStatus]]:
    return [(e.from_status, e.to_status) for e in events if e.space_id == space_id]


async def test_hooks_see_every_space(
    engine: str, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    if engine not in MULTI_SPACE_ENGINES:
        pytest.skip(f"the {engine} engine keeps one space per database in this version")
    core = await open_core()
    lasting: list[TransitionEvent] = []
    core.batch_manager.on_transition(lasting.append)  # outlives supervisors
    for source, text in corpus(4, words=20):
        await core.ingest(text, source=source, mode="async")
    supervisor = BatchSupervisor(core, fast_supervisor())
    seen: list[TransitionEvent] = []
    supervisor.on_transition(seen.append)

    async def tick() -> None:
        await supervisor.run_once()
        emulator.complete_all()
        await supervisor.run_once()

    await tick()
    assert _moves(seen, 1)[:3] == _LIFE and not _moves(seen, 2)
    record = await core.space_migrate(NEW)
    await tick()
    await tick()
    assert record.space_id == 2
    assert _moves(seen, 2)[:3] == _LIFE  # the backfill's job, through the same hooks
    space_jobs = {e.job_id for e in seen if e.space_id == 2}
    assert space_jobs and space_jobs.isdisjoint({e.job_id for e in seen if e.space_id == 1})
    assert lasting == seen  # one registry: the core's own hooks saw the same, in order


def test_an_event_space_must_be_a_positive_integer() -> None:
    good = TransitionEvent(
        job_id="j",
        remote_name=None,
        from_status=JobStatus.CREATED,
        to_status=JobStatus.SUBMITTED,
        at=datetime.datetime.now(datetime.UTC),
    )
    assert good.space_id == 1
    for bad in (0, -1, True, "2", 1.0):
        with pytest.raises(InvalidInputError, match="space_id"):
            TransitionEvent(
                job_id="j",
                remote_name=None,
                from_status=JobStatus.CREATED,
                to_status=JobStatus.SUBMITTED,
                at=good.at,
                space_id=bad,  # type: ignore[arg-type]
            )
