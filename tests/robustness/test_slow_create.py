"""A create call that times out on our side but still lands on the server.

Over loopback (the in-process transport cancels the emulator's work with the caller;
a real server does not), ``batches.create`` answers after ``RetryConfig.timeout``: the
client gives up, the job row stays CREATED ("outcome unknown", as designed), and the
server creates the job a moment later. Contract 3 says reconcile must then adopt that
job, never create a second one: it waits ``create_grace_seconds`` after a create of
unknown outcome before it would send another.
"""

from __future__ import annotations

from pathlib import Path

from asemantic import (
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    RetryConfig,
    SemanticCore,
)
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.robustness.conftest import SPACE, corpus, drain, successful_creates
from tests.support import eventually

LATE = 0.8
TIMEOUT = 0.2
GRACE = 3.0


async def test_a_create_that_lands_after_the_timeout_is_adopted_not_duplicated(
    db_path: Path, keys: GoogleKeyring
) -> None:
    emulator = GeminiEmulator()
    async with emulator.serve() as base_url:
        retry = RetryConfig(attempts=2, initial_delay=0.001, max_delay=0.01, timeout=TIMEOUT)
        async with SemanticCore.open(
            db_path,
            keys=keys,
            config=CoreConfig(space=SPACE, create_grace_seconds=GRACE),
            gemini=GeminiSettings(base_url=base_url, retry=retry),
        ) as core:
            for source, text in corpus(4):
                await core.ingest(text, source=source, mode="async")
            emulator.faults.add(Fault(endpoint="batches.create", latency=LATE))
            (job_id,) = await core.batch_manager.flush_queue(min_size=1)
            record = await core.batch_jobs.get_job(job_id)
            assert record is not None and record.status is JobStatus.CREATED
            assert successful_creates(emulator) == 0  # we gave up before the server answered
            # The next tick's reconcile waits (the create may land) rather than resend.
            assert await core.batch_manager.reconcile() == []
            assert successful_creates(emulator) == 0
            await eventually(lambda: successful_creates(emulator) == 1)  # the create lands
            assert await core.batch_manager.reconcile() == [job_id]  # found: adopted
            await drain(core, emulator)
            assert [j.job_id for j in await core.batch_jobs.jobs()] == [job_id]
            creates = successful_creates(emulator)
            leftovers = emulator.remote_leftovers()
    assert leftovers.batches == ()
    assert creates == 1
