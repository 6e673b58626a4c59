"""Wrong and revoked keys: a typed AuthenticationError, and no partial state.

The emulator is restricted to other keys (``api_keys=``), or starts rejecting one of
ours between two operations (or between two calls of one operation), as a key revoked
in Google's console would be. "No partial state" means: nothing written by online
calls (sync ingestion, search); for batch work, the designed, resumable states only (a
CREATED job whose create never happened, or an active job that keeps waiting), which
complete once the key works again, with every job created remotely exactly once.
"""

from __future__ import annotations

import httpx2
import pytest

from asemantic import (
    AuthenticationError,
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    SemanticCore,
)
from tests.robustness.conftest import (
    BATCH_KEY,
    DEFAULT_KEY,
    SPACE,
    OpenCore,
    RevocableEmulator,
    batch_texts_applied,
    check_contracts,
    corpus,
    drain,
    fast_retry,
    successful_creates,
    table_counts,
)


class RevokeAfter(httpx2.AsyncBaseTransport):
    """Revokes ``key`` on the emulator once a request matching ``when`` was answered."""

    def __init__(
        self, emulator: RevocableEmulator, key: str, *, path_contains: str, after: int = 1
    ) -> None:
        self._inner = emulator.async_transport()
        self._emulator = emulator
        self._key = key
        self._path = path_contains
        self._left = after

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if self._path in request.url.path and self._left > 0:
            self._left -= 1
            if self._left == 0:
                self._emulator.revoke(self._key)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _open_with(
    open_core: OpenCore,
    transport: httpx2.AsyncBaseTransport,
    *,
    config: CoreConfig | None = None,
    max_concurrency: int = 4,
) -> SemanticCore:
    return await open_core(
        gemini=GeminiSettings(
            base_url="http://emulator.invalid",
            transport=transport,
            retry=fast_retry(),
            max_concurrency=max_concurrency,
        ),
        config=config,
    )


async def test_wrong_keys_online_calls_are_typed_and_write_nothing(
    open_core: OpenCore,
) -> None:
    restricted = RevocableEmulator(api_keys=["AIza-the-only-valid-key"])
    core = await _open_with(open_core, restricted.async_transport())
    before = await table_counts(core)
    with pytest.raises(AuthenticationError) as ingest_error:
        await core.ingest("# Doc\n\nsome text", source="doc", mode="sync")
    with pytest.raises(AuthenticationError):
        await core.search("some text")
    assert await table_counts(core) == before
    # Rejected at once, not retried: one request per operation, each refused.
    assert [r.status for r in restricted.requests] == [400, 400]
    assert ingest_error.value.status == 400
    assert DEFAULT_KEY not in str(ingest_error.value)


async def test_wrong_batch_key_flush_leaves_a_resumable_job_and_nothing_remote(
    open_core: OpenCore,
) -> None:
    restricted = RevocableEmulator(api_keys=[DEFAULT_KEY])  # the batch key is not valid
    core = await _open_with(open_core, restricted.async_transport())
    for source, text in corpus(5):
        await core.ingest(text, source=source, mode="async")  # no remote call: accepted
    with pytest.raises(AuthenticationError):
        await core.batch_manager.flush_queue(min_size=1)
    (job,) = await core.batch_jobs.jobs()
    assert job.status is JobStatus.CREATED and job.remote_name is None
    assert await core.store.count_chunks_by_status() == {"READY": 0, "PENDING": 5, "FAILED": 0}
    assert not restricted.remote_leftovers()
    report = await core.batch_manager.sync_status()  # nothing active: nothing to refuse
    assert report.polled == 0
    with pytest.raises(AuthenticationError):
        await core.batch_manager.reconcile()
    assert [j.status for j in await core.batch_jobs.jobs()] == [JobStatus.CREATED]

    # With a valid batch key (a new core on the same file) the same job completes.
    fixed = RevocableEmulator()
    good = await open_core(
        keyring=GoogleKeyring(DEFAULT_KEY, batch_key="AIza-a-valid-batch-key"),
        gemini=GeminiSettings(
            base_url="http://emulator.invalid",
            transport=fixed.async_transport(),
            retry=fast_retry(),
        ),
    )
    await drain(good, fixed)
    assert [j.job_id for j in await good.batch_jobs.jobs()] == [job.job_id]
    assert successful_creates(fixed) == 1
    assert await batch_texts_applied(good) == 5
    await check_contracts(good, fixed)


async def test_default_key_revoked_between_two_ingestions(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    core = await open_core()
    await core.ingest("# One\n\nthe first document", source="one")
    emulator.revoke(DEFAULT_KEY)
    before = await table_counts(core)
    with pytest.raises(AuthenticationError):
        await core.ingest("# Two\n\nthe second document", source="two")
    with pytest.raises(AuthenticationError):
        await core.search("first document")
    assert await table_counts(core) == before
    assert await core.store.get_document("two") is None
    emulator.restore(DEFAULT_KEY)
    await core.ingest("# Two\n\nthe second document", source="two")
    assert [h.source for h in await core.search("second document", k=1)] == ["two"]
    await check_contracts(core)


async def test_default_key_revoked_between_two_calls_of_one_ingestion(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    """A document needing several embedding calls: the key dies after the first one."""
    revoking = RevokeAfter(emulator, DEFAULT_KEY, path_contains="EmbedContents")
    core = await _open_with(
        open_core,
        revoking,
        config=CoreConfig(space=SPACE, target_tokens=40, max_tokens=80),
        max_concurrency=1,  # one call after the other: the second one meets the revoked key
    )
    sections = "\n\n".join(f"## Part {i}\n\n" + f"section {i} words " * 12 for i in range(260))
    before = await table_counts(core)
    with pytest.raises(AuthenticationError):
        await core.ingest("# Long\n\n" + sections, source="long", mode="sync")
    calls = emulator.requests_to("models.batchEmbedContents")
    assert len(calls) >= 2 and calls[0].status == 200
    assert any(r.status == 400 for r in calls[1:])
    assert await table_counts(core) == before  # the vectors of the first call are not kept
    emulator.restore(DEFAULT_KEY)
    result = await core.ingest("# Long\n\n" + sections, source="long", mode="sync")
    assert result.chunks_stored > 100
    await check_contracts(core)


async def test_batch_key_revoked_between_upload_and_create(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    revoking = RevokeAfter(emulator, BATCH_KEY, path_contains="/upload/")
    core = await _open_with(open_core, revoking)
    for source, text in corpus(6):
        await core.ingest(text, source=source, mode="async")
    with pytest.raises(AuthenticationError):
        await core.batch_manager.flush_queue(min_size=1)
    (job,) = await core.batch_jobs.jobs()
    assert job.status is JobStatus.CREATED  # create refused: the row waits for reconcile
    assert emulator.batches == ()
    assert len(emulator.files) == 1  # the upload happened; it carries the job's name
    emulator.restore(BATCH_KEY)
    await drain(core, emulator)
    assert successful_creates(emulator) == 1
    assert await batch_texts_applied(core) == 6
    await check_contracts(core, emulator)  # the first upload was cleaned up too


async def test_batch_key_revoked_while_a_job_runs(
    open_core: OpenCore, emulator: RevocableEmulator
) -> None:
    core = await open_core()
    for source, text in corpus(8):
        await core.ingest(text, source=source, mode="async")
    (job_id,) = await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    emulator.revoke(BATCH_KEY)
    before = await table_counts(core)
    report = await core.batch_manager.sync_status()
    assert isinstance(report.auth_error, AuthenticationError)
    assert report.completed == [] and job_id in report.errors
    assert BATCH_KEY not in repr(report)
    assert await table_counts(core) == before
    record = await core.batch_jobs.get_job(job_id)
    assert record is not None and record.status is JobStatus.SUBMITTED
    # Online work is untouched by the batch key's fate.
    await core.ingest("# Online\n\nstill works", source="online")
    emulator.restore(BATCH_KEY)
    report = await core.batch_manager.sync_status()
    assert report.completed == [job_id]
    assert await batch_texts_applied(core) == 8
    await check_contracts(core, emulator)
