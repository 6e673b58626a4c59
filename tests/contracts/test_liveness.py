"""Contract 1 where the remote side loses things: no chunk waits forever in a job whose
remote job or result file is gone.

Both cases happen without any bug on our side: the Files API deletes files 48 hours
after they were made (result files too), and a remote job can be deleted by someone
else (or expire from the provider's listing) while the local row still waits for it.

Not about durability: these run on every engine, memory included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google import genai

from asemantic import JobStatus, SemanticCore
from asemantic.testing.emulator import GeminiEmulator
from tests.contracts import harness
from tests.contracts.conftest import NewTarget
from tests.support import engine_params

pytestmark = pytest.mark.parametrize("engine", engine_params())

HOURS_49 = 49 * 3600.0


async def _queued_job(
    tmp_path: Path, emulator: GeminiEmulator, new_target: NewTarget
) -> SemanticCore:
    core = await harness.open_in_process(await new_target(tmp_path), emulator, create_grace=0.0)
    for index in range(3):
        source, text = harness.document(index)
        await core.ingest(text, source=source, mode="async")
    assert len(await core.batch_manager.flush_queue(min_size=1)) == 1
    return core


async def _settles_with_nothing_lost(core: SemanticCore, emulator: GeminiEmulator) -> None:
    await harness.drain(core, emulator, rounds=5)
    await harness.check_consistent(core)
    assert await harness.check_vectors(core, emulator) == 7  # 3 + 1 + 3 chunks
    await harness.check_settled(core, emulator)


async def test_a_job_deleted_remotely_hands_its_chunks_back(
    tmp_path: Path, new_target: NewTarget
) -> None:
    emulator = GeminiEmulator()
    core = await _queued_job(tmp_path, emulator, new_target)
    try:
        (job,) = await core.batch_jobs.jobs()
        assert job.status is JobStatus.SUBMITTED and job.remote_name
        client = genai.Client(
            api_key=harness.BATCH_KEY, vertexai=False, http_options=emulator.http_options()
        )
        client.batches.delete(name=job.remote_name)
        await _settles_with_nothing_lost(core, emulator)
        failed = await core.batch_jobs.get_job(job.job_id)
        assert failed is not None and failed.status is JobStatus.FAILED
    finally:
        await core.aclose()


async def test_results_deleted_before_they_were_read_are_not_a_dead_end(
    tmp_path: Path, new_target: NewTarget
) -> None:
    emulator = GeminiEmulator()
    core = await _queued_job(tmp_path, emulator, new_target)
    try:
        emulator.advance(100)  # the job succeeds and writes its result file
        emulator.advance(HOURS_49)  # nobody polled for two days: the file is deleted
        assert all(f.source != "GENERATED" for f in emulator.files)
        await _settles_with_nothing_lost(core, emulator)
    finally:
        await core.aclose()
