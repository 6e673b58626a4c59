"""Jobs sized to the token quota: ``max_job_tokens``, and halving after a refusal.

Against the emulator through the real google-genai SDK. A quota that depends on the
job's size (which the emulator's fault script cannot express) is a thin wrapper around
the real client that reads the uploaded input back from the emulator.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from asemantic import GoogleKeyring, JobStatus, SemanticCore
from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.batch.limits import JobLimits
from asemantic.batch.manager import BatchManager
from asemantic.batch.supervisor import BatchSupervisor
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import RateLimitError
from asemantic.ports import BatchBackend, RemoteJob
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.supervisor.conftest import OpenCore, fast, ingest
from tests.supervisor.test_create_backoff import RETRY, Clock

TOKEN_REFUSAL = (
    "Resource has been exhausted: the enqueued tokens of batch jobs for this model "
    "exceed your project's limit."
)


def client(core: SemanticCore, emulator: GeminiEmulator, keys: GoogleKeyring) -> GeminiBatchClient:
    return GeminiBatchClient(
        keys,
        space=core.space,
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RETRY,
    )


def file_tokens(emulator: GeminiEmulator, name: str) -> int:
    total = 0
    for line in emulator.file_content(name).splitlines():
        if line.strip():
            request = orjson.loads(line)["request"]
            total += max(1, approximate_tokens(request["content"]["parts"][0]["text"]))
    return total


class Quota:
    """The real client under an enqueued-token quota per project (unfinished jobs count)."""

    def __init__(self, inner: GeminiBatchClient, emulator: GeminiEmulator, limit: int) -> None:
        self.inner = inner
        self.emulator = emulator
        self.limit = limit
        self.accepted: list[int] = []
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_from_file(self, input_file: str, *, display_name: str) -> RemoteJob:
        tokens = file_tokens(self.emulator, input_file)
        queued = sum(
            file_tokens(self.emulator, b.source_file)
            for b in self.emulator.batches
            if not b.done and b.source_file
        )
        if queued + tokens > self.limit:
            self.refused += 1
            raise RateLimitError(
                f"batches.create_embeddings failed: 429 RESOURCE_EXHAUSTED: {TOKEN_REFUSAL}",
                status=429,
                retry_after=1.0,
                token_quota=True,
            )
        self.accepted.append(tokens)
        return await self.inner.create_from_file(input_file, display_name=display_name)


async def settle(
    core: SemanticCore, manager: BatchManager, emulator: GeminiEmulator, clock: Clock
) -> int:
    """Run passes (moving the clock past every wait) until nothing is left; the count."""
    for rounds in range(1, 60):
        await manager.reconcile()
        await manager.flush_queue(min_size=1)
        emulator.complete_all()
        await manager.sync_status()
        clock.advance(5)
        if (await core.batch_jobs.snapshot()).idle:
            return rounds
    raise AssertionError("the pipeline did not settle")


async def test_a_token_quota_refusal_halves_the_job_and_the_limit_is_remembered(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 8)
    clock = Clock()
    manager = BatchManager(
        jobs=core.batch_jobs,
        backend_factory=lambda: client(core, emulator, keys),
        keys=keys,
        create_grace=0.0,
        clock=clock,
    )
    emulator.faults.add(Fault(endpoint="batches.create", status=429, message=TOKEN_REFUSAL))
    await manager.flush_queue(min_size=1)
    [job] = await core.batch_jobs.jobs()
    assert job.status is JobStatus.CREATED and job.input_file is None
    assert len(await core.batch_jobs.job_chunks(job.job_id)) == 4  # halved
    assert len(await core.batch_jobs.queued_chunks()) == 4  # the rest back in the queue
    assert emulator.files == ()  # the input that no longer matches was deleted
    limit = await core.batch_jobs.job_token_limit()
    assert limit is not None
    chunks = await core.batch_jobs.job_chunks(job.job_id)
    assert sum(approximate_tokens(c.text) for c in chunks) <= limit

    await settle(core, manager, emulator, clock)
    assert (await core.store.count_chunks_by_status())["READY"] == 8
    assert not emulator.remote_leftovers()
    attempts = [c.attempts for c in await core.store.chunk_records()]
    assert max(attempts) == 0  # resizing for the quota spent no chunk's attempts
    await manager.aclose()
    await core.aclose()

    again = await open_core()
    assert await again.batch_jobs.job_token_limit() == limit  # remembered by the database
    await again.batch_jobs.set_job_token_limit(None)
    assert await again.batch_jobs.job_token_limit() is None


async def test_jobs_converge_under_a_quota_smaller_than_one_job(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 12)
    per_chunk = max(approximate_tokens(c.text) for c in await _all_chunks(core))
    clock = Clock()
    quota = Quota(client(core, emulator, keys), emulator, limit=3 * per_chunk)
    manager = BatchManager(
        jobs=core.batch_jobs,
        backend_factory=lambda: cast(BatchBackend, quota),
        keys=keys,
        create_grace=0.0,
        clock=clock,
    )
    await settle(core, manager, emulator, clock)
    counts = await core.store.count_chunks_by_status()
    assert counts["READY"] == 12 and counts["FAILED"] == 0
    assert quota.refused >= 1
    assert quota.accepted and max(quota.accepted) <= quota.limit
    assert sum(quota.accepted) == sum(approximate_tokens(c.text) for c in await _all_chunks(core))
    learned = await core.batch_jobs.job_token_limit()
    assert learned is not None and learned <= quota.limit
    assert not emulator.remote_leftovers()
    await manager.aclose()


async def test_a_refusal_while_other_jobs_are_queued_waits_instead_of_halving(
    open_core: OpenCore, emulator: GeminiEmulator, keys: GoogleKeyring
) -> None:
    core = await open_core()
    await ingest(core, 4)
    clock = Clock()
    manager = BatchManager(
        jobs=core.batch_jobs,
        backend_factory=lambda: client(core, emulator, keys),
        keys=keys,
        create_grace=0.0,
        clock=clock,
        limits=JobLimits(backoff_initial=30.0, backoff_max=60.0),
    )
    await manager.flush_queue(min_size=1, max_size=2)  # two jobs, both submitted
    await ingest(core, 2, start=4)
    emulator.faults.add(Fault(endpoint="batches.create", status=429, message=TOKEN_REFUSAL))
    await manager.flush_queue(min_size=1)
    jobs = await core.batch_jobs.jobs()
    assert [j.status for j in jobs] == [JobStatus.SUBMITTED] * 2 + [JobStatus.CREATED]
    assert len(await core.batch_jobs.job_chunks(jobs[2].job_id)) == 2  # not resized
    assert await core.batch_jobs.job_token_limit() is None
    assert jobs[2].input_file is not None  # kept for the retry
    await manager.aclose()


async def test_max_job_tokens_sizes_jobs_when_the_queue_is_flushed(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 9)
    chunks = await _all_chunks(core)
    per_chunk = max(approximate_tokens(c.text) for c in chunks)
    config = fast(max_job_tokens=3 * per_chunk)
    supervisor = BatchSupervisor(core, config)
    await supervisor.run_once()
    jobs = await core.batch_jobs.jobs()
    assert len(jobs) >= 3
    for job in jobs:
        sent = await core.batch_jobs.job_chunks(job.job_id)
        assert sum(approximate_tokens(c.text) for c in sent) <= 3 * per_chunk
    assert emulator.requests_to("batches.create")
    assert all(r.status == 200 for r in emulator.requests_to("batches.create"))


async def _all_chunks(core: SemanticCore) -> list[Any]:
    """Every chunk's text as a job sends it (its vector source), through the port."""

    class Text:
        def __init__(self, text: str) -> None:
            self.text = text

    return [Text(c.vector_source) for c in await core.store.chunk_records()]
