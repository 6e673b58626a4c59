"""Jobs that do not behave: too old, in odd states, duplicated, hard to delete.

Against the emulator through the real google-genai SDK; odd remote states (which the
emulator does not produce) come from a thin wrapper around the real batch client.
The manager runs on a clock the test moves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from asemantic import GoogleKeyring, JobStatus, SemanticCore
from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.batch.limits import NEXT_POLL_AT, ODD_POLLS, JobLimits
from asemantic.batch.manager import BatchManager
from asemantic.batch.stuck import MAX_CLEANUP_ATTEMPTS
from asemantic.ports import BatchBackend, RemoteJobStatus
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.supervisor.conftest import OpenCore, ingest
from tests.supervisor.test_create_backoff import RETRY, Clock

HOUR = 3600.0


class Steered:
    """The real batch client, except that polls may answer an odd state."""

    def __init__(self, inner: GeminiBatchClient) -> None:
        self.inner = inner
        self.odd_state: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_job_status(self, name: str) -> RemoteJobStatus:
        status = await self.inner.get_job_status(name)
        if self.odd_state is None:
            return status
        return dataclasses.replace(status, state=self.odd_state, output_file=None)


def setup(
    core: SemanticCore,
    emulator: GeminiEmulator,
    keys: GoogleKeyring,
    clock: Clock,
    *,
    max_job_age: float | None = 10 * HOUR,
) -> tuple[BatchManager, Steered]:
    steered = Steered(
        GeminiBatchClient(
            keys,
            space=core.space,
            base_url=emulator.base_url,
            transport=emulator.async_transport(),
            retry=RETRY,
        )
    )
    manager = BatchManager(
        jobs=core.batch_jobs,
        backend_factory=lambda: cast(BatchBackend, steered),
        keys=keys,
        create_grace=0.0,
        clock=clock,
        limits=JobLimits(max_job_age=max_job_age, backoff_initial=60.0, backoff_max=HOUR),
    )
    return manager, steered


def polls(emulator: GeminiEmulator) -> int:
    return len(emulator.requests_to("batches.get"))


async def queued(core: SemanticCore) -> int:
    return len(await core.batch_jobs.queued_chunks())


async def test_a_job_older_than_max_job_age_is_cancelled_cleaned_and_requeued(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 3)
    clock = Clock()
    manager, _ = setup(core, emulator, keys, clock)
    await manager.flush_queue(min_size=1)
    [job] = await core.batch_jobs.jobs()
    clock.advance(9 * HOUR)
    await manager.sync_status()  # PENDING, and young enough
    assert (await core.batch_jobs.get_job(job.job_id)).status is JobStatus.SUBMITTED  # type: ignore[union-attr]
    assert emulator.requests_to("batches.cancel") == ()

    clock.advance(2 * HOUR)
    report = await manager.sync_status()
    assert report.failed == [job.job_id]
    old = await core.batch_jobs.get_job(job.job_id)
    assert old is not None and old.status is JobStatus.FAILED
    assert "max_job_age" in (old.error_message or "")
    assert [r.status for r in emulator.requests_to("batches.cancel")] == [200]
    assert old.cleaned and not emulator.remote_leftovers()  # remote job and input deleted
    assert await queued(core) == 3  # back in the queue

    await manager.flush_queue(min_size=1)
    emulator.complete_all()
    await manager.sync_status()
    assert (await core.store.count_chunks_by_status())["READY"] == 3
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_an_unknown_state_is_polled_with_backoff_then_retired_at_max_job_age(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager, steered = setup(core, emulator, keys, clock, max_job_age=3 * HOUR)
    await manager.flush_queue(min_size=1)
    steered.odd_state = "JOB_STATE_PARTIALLY_SUCCEEDED"

    await manager.sync_status()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED and job.stats[ODD_POLLS] == 1
    first_wait = job.stats[NEXT_POLL_AT] / 1000 - clock().timestamp()
    assert first_wait == 60.0
    seen = polls(emulator)
    clock.advance(30)
    await manager.sync_status()  # not due: no poll at all
    assert polls(emulator) == seen
    clock.advance(31)
    await manager.sync_status()
    [job] = await core.batch_jobs.jobs()
    assert polls(emulator) == seen + 1 and job.stats[ODD_POLLS] == 2
    assert job.stats[NEXT_POLL_AT] / 1000 - clock().timestamp() == 120.0  # doubled

    clock.advance(3 * HOUR)  # past max_job_age: polled (due or not) and retired
    await manager.sync_status()
    [old] = await core.batch_jobs.jobs()
    assert old.status is JobStatus.FAILED and old.cleaned
    assert [r.status for r in emulator.requests_to("batches.cancel")] == [200]
    assert await queued(core) == 2
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_an_unspecified_state_that_turns_known_carries_on(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager, steered = setup(core, emulator, keys, clock)
    await manager.flush_queue(min_size=1)
    steered.odd_state = "JOB_STATE_UNSPECIFIED"
    await manager.sync_status()
    steered.odd_state = None
    emulator.complete_all()
    clock.advance(61)
    await manager.sync_status()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.COMPLETED
    assert (await core.store.count_chunks_by_status())["READY"] == 2
    await manager.aclose()


async def test_a_second_remote_job_with_the_same_display_name_is_cancelled_and_deleted(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 3)
    clock = Clock()
    manager, steered = setup(core, emulator, keys, clock)
    await manager.flush_queue(min_size=1)
    [job] = await core.batch_jobs.jobs()
    assert job.input_file is not None and job.remote_name is not None
    extra = await steered.inner.create_from_file(job.input_file, display_name=job.display_name)
    assert len(emulator.batches) == 2

    await manager.reconcile()
    assert [b.name for b in emulator.batches] == [job.remote_name]
    assert [r.status for r in emulator.requests_to("batches.cancel")] == [200]
    assert extra.name not in {b.name for b in emulator.batches}
    assert job.input_file in {f.name for f in emulator.files}  # shared: kept for the job

    emulator.complete_all()
    await manager.sync_status()
    assert (await core.store.count_chunks_by_status())["READY"] == 3
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_a_created_job_found_twice_remotely_adopts_one_and_drops_the_other(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager, steered = setup(core, emulator, keys, clock)
    emulator.faults.add(Fault(endpoint="batches.create", lose_response=True))
    await manager.flush_queue(min_size=1)  # landed, answer lost: the job stays CREATED
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.CREATED and job.input_file is not None
    await steered.inner.create_from_file(job.input_file, display_name=job.display_name)
    assert len(emulator.batches) == 2

    await manager.reconcile()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.SUBMITTED
    assert [b.name for b in emulator.batches] == [job.remote_name]
    emulator.complete_all()
    await manager.sync_status()
    assert (await core.store.count_chunks_by_status())["READY"] == 2
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_a_refused_file_delete_is_logged_and_the_batch_still_deleted(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager, _ = setup(core, emulator, keys, clock)
    await manager.flush_queue(min_size=1)
    emulator.faults.add(Fault(endpoint="files.delete", status=400, message="delete refused"))
    emulator.complete_all()
    await manager.sync_status()
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.COMPLETED and job.cleaned
    assert emulator.batches == ()  # the batch went all the same
    assert len(emulator.files) == 1  # the refused one stays (the Files API expires it)
    deletes = len(emulator.requests_to("files.delete"))
    for _ in range(3):
        await manager.sync_status()
        await manager.cleanup_finished()
    assert len(emulator.requests_to("files.delete")) == deletes  # never retried
    await manager.aclose()


async def test_a_clean_up_failing_for_a_while_is_retried_a_bounded_number_of_passes(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 2)
    clock = Clock()
    manager, _ = setup(core, emulator, keys, clock)
    await manager.flush_queue(min_size=1)
    emulator.faults.add(Fault(endpoint="files.delete", status=503, times=1000))
    emulator.complete_all()
    await manager.sync_status()
    passes = 1
    while await core.batch_jobs.jobs(uncleaned=True) and passes < 3 * MAX_CLEANUP_ATTEMPTS:
        await manager.cleanup_finished()
        passes += 1
    assert passes == MAX_CLEANUP_ATTEMPTS
    [job] = await core.batch_jobs.jobs()
    assert job.cleaned and emulator.batches == ()
    emulator.faults.clear()
    await manager.aclose()
