"""A refused create keeps the job's input and waits: RetryInfo, else doubling backoff.

Against the emulator through the real google-genai SDK. The manager runs on a clock
the test moves, so waits are checked by what is (not) sent, never by timing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from asemantic import GoogleKeyring, JobStatus, SemanticCore
from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.batch.limits import CREATE_REFUSALS, RETRY_AT, JobLimits
from asemantic.batch.manager import BatchManager
from asemantic.batch.supervisor import BatchSupervisor
from asemantic.cli.commands.jobs import job_note, job_record
from asemantic.domain.policy import RetryConfig
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.supervisor.conftest import OpenCore, fast, ingest

RETRY = RetryConfig(attempts=2, initial_delay=0.001, max_delay=0.005, timeout=10.0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def manager_on(
    core: SemanticCore,
    emulator: GeminiEmulator,
    keys: GoogleKeyring,
    clock: Clock,
    *,
    limits: JobLimits | None = None,
) -> BatchManager:
    return BatchManager(
        jobs=core.batch_jobs,
        backend_factory=lambda: GeminiBatchClient(
            keys,
            space=core.space,
            base_url=emulator.base_url,
            transport=emulator.async_transport(),
            retry=RETRY,
        ),
        keys=keys,
        create_grace=0.0,
        clock=clock,
        limits=limits or JobLimits(backoff_initial=10.0, backoff_max=80.0),
    )


def uploads(emulator: GeminiEmulator) -> int:
    return len([r for r in emulator.requests_to("files.upload_start") if r.status == 200])


def creates(emulator: GeminiEmulator) -> list[int]:
    return [r.status for r in emulator.requests_to("batches.create")]


async def test_a_429_on_create_keeps_the_input_and_waits_its_retry_delay(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 3)
    clock = Clock()
    manager = manager_on(core, emulator, keys, clock)
    emulator.faults.add(Fault(endpoint="batches.create", status=429, times=3, retry_delay=17))

    await manager.flush_queue(min_size=1)
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.CREATED
    assert job.input_file is not None
    first_input = job.input_file
    assert job.stats[CREATE_REFUSALS] == 1
    wait = job.stats[RETRY_AT] / 1000 - clock().timestamp()
    assert 17 <= wait <= 17 * 1.1 + 0.001  # RetryInfo, plus at most 10% spread
    assert (uploads(emulator), creates(emulator)) == (1, [429])

    clock.advance(10)  # still inside the wait: nothing is sent
    assert await manager.reconcile() == []
    assert (uploads(emulator), creates(emulator)) == (1, [429])

    for refused in (2, 3):
        clock.advance(20)
        await manager.reconcile()
        [job] = await core.batch_jobs.jobs()
        assert job.status is JobStatus.CREATED and job.stats[CREATE_REFUSALS] == refused
        assert job.input_file == first_input
    clock.advance(20)
    await manager.reconcile()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED
    assert job.input_file == first_input
    assert RETRY_AT not in job.stats and job.stats[CREATE_REFUSALS] == 3
    assert (uploads(emulator), creates(emulator)) == (1, [429, 429, 429, 200])
    assert [f.name for f in emulator.files] == [first_input]  # never a second copy

    emulator.complete_all()
    await manager.sync_status()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.COMPLETED
    assert (await core.store.count_chunks_by_status())["READY"] == 3
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_without_retry_info_the_wait_doubles_with_jitter(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager = manager_on(core, emulator, keys, clock)
    emulator.faults.add(Fault(endpoint="batches.create", status=503, times=4))

    await manager.flush_queue(min_size=1)
    waits = []
    for _ in range(4):
        [job] = await core.batch_jobs.jobs()
        waits.append(job.stats[RETRY_AT] / 1000 - clock().timestamp())
        clock.advance(waits[-1] + 0.01)
        await manager.reconcile()
    for n, wait in enumerate(waits):
        base = min(80.0, 10.0 * 2**n)
        assert base * 0.8 - 0.001 <= wait <= base * 1.2 + 0.001
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED
    assert uploads(emulator) == 1
    assert creates(emulator) == [503, 503, 503, 503, 200]
    await manager.aclose()


async def test_while_one_job_waits_no_other_job_uploads_or_creates(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 4)
    clock = Clock()
    manager = manager_on(core, emulator, keys, clock)
    emulator.faults.add(Fault(endpoint="batches.create", status=429, retry_delay=30))
    await manager.flush_queue(min_size=1, max_size=2)  # two jobs: the first is refused
    assert [j.status for j in await core.batch_jobs.jobs()] == [JobStatus.CREATED] * 2
    assert (uploads(emulator), creates(emulator)) == (1, [429])
    await ingest(core, 2, start=4)
    await manager.flush_queue(min_size=1, max_size=2)  # a third job row, not sent
    assert (uploads(emulator), creates(emulator)) == (1, [429])
    clock.advance(40)
    await manager.reconcile()
    assert [j.status for j in await core.batch_jobs.jobs()] == [JobStatus.SUBMITTED] * 3
    assert (uploads(emulator), creates(emulator)) == (3, [429, 200, 200, 200])
    await manager.aclose()


async def test_the_wait_shows_in_health_and_in_the_jobs_listing(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 2)
    emulator.faults.add(Fault(endpoint="batches.create", status=429, retry_delay=120))
    supervisor = BatchSupervisor(core, fast())
    before = time.time()
    await supervisor.run_once()
    health = supervisor.health
    assert health.waiting_jobs == 1
    assert health.create_wait_until is not None
    assert before + 120 <= health.create_wait_until <= time.time() + 132 + 1
    [job] = await core.batch_jobs.jobs()
    listed = job_record(job)
    assert listed["create_retry_at"] is not None
    assert listed["stats"][CREATE_REFUSALS] == 1
    assert job_note(job).startswith("create refused 1x; next try at ")
    listings = len(emulator.requests_to("batches.list"))
    await supervisor.run_once()  # inside the wait: no create, no upload, no listing
    assert len(emulator.requests_to("batches.list")) == listings
    assert creates(emulator) == [429]
    assert uploads(emulator) == 1
