"""Submitting one CREATED job: upload its input once, create, and wait when refused.

:func:`submit_job` is the create path of :class:`~asemantic.batch.manager.BatchManager`
(both ``flush_queue`` and ``reconcile`` submit through it).

Decisions:

* **One input file per job.** The input is uploaded once and its name is committed on
  the job row (``input_file``) *before* the create is sent; every later attempt of the
  same job creates from that file. Only a refusal that says the file is unusable (a
  400 or 404 answered to a create from a file uploaded by an earlier attempt, such as
  one past the Files API's 48 h retention) deletes it and lets the next attempt upload
  again, and a job resized for a token quota (:mod:`asemantic.batch.quota`) drops its
  input the same way. So the provider never holds two inputs of one job.
* **A refused create waits.** A 429 (or another answer worth retrying: 408, a 5xx, a
  timeout) keeps the job CREATED with its input, and writes when it may be tried again
  into its stats (``retry_at_ms``, ``create_refusals``): the ``RetryInfo`` delay the
  provider asked for, else a doubling jittered backoff
  (:func:`~asemantic.domain.policy.create_retry_delay`; only where
  :class:`~asemantic.batch.limits.JobLimits` ``backoff`` is on, as in a supervisor).
  While any job of the database waits, no create (and no upload) is sent for any job:
  the quota that refused one refuses the others too. The supervisor's health and
  ``asemantic jobs`` show the wait.
* A create of unknown outcome (no answer, a 5xx) also waits ``create_grace`` before
  another is sent, and reconcile adopts the job if it landed (see the manager).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, overload

from asemantic.batch import quota
from asemantic.batch.limits import CREATE_REFUSALS, RETRY_AT, SUBMITTED_AT, JobLimits, epoch_ms
from asemantic.batch.view import PassView
from asemantic.domain.jobs import JobStatus, JobTrigger
from asemantic.domain.linekeys import line_key
from asemantic.domain.policy import create_retry_delay, is_retryable_status, refused_before_acting
from asemantic.errors import AuthenticationError, ProviderError
from asemantic.ports import BatchBackend, BatchLine, JobNote, JobRecord, RemoteJob

if TYPE_CHECKING:
    from asemantic.batch.manager import BatchManager, CreateCheck

__all__ = ["LineKeys", "create_wait_until", "submit_job"]

logger = logging.getLogger("asemantic.batch.manager")


class LineKeys(Sequence[str]):
    """The keys of a job's lines in the order they were sent, with a set's membership."""

    __slots__ = ("_keys", "_set")

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(keys)
        self._set = frozenset(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._keys[index]

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


def create_wait_until(view: PassView, now: float) -> float | None:
    """Until when (epoch seconds) creates wait for a refused job, or None."""
    waits = [
        job.stats[RETRY_AT] / 1000
        for job in view.jobs(JobStatus.CREATED)
        if job.stats.get(RETRY_AT, 0) / 1000 > now
    ]
    return max(waits) if waits else None


async def submit_job(
    manager: BatchManager,
    backend: BatchBackend,
    record: JobRecord,
    before_create: CreateCheck | None,
    view: PassView,
    limits: JobLimits,
) -> bool:
    """Create the remote job for a CREATED row. False: stop submitting for now."""
    jobs = manager.jobs
    if create_wait_until(view, manager.now().timestamp()) is not None:
        return False
    chunks = await jobs.job_chunks(record.job_id)
    if not chunks:
        await manager.fail(record, "the job has no chunks left to embed", view)
        return True
    lines = [
        BatchLine(key=line_key(c.chunk_id, c.content_hash), text=c.text, title=c.title)
        for c in chunks
    ]
    limit = await quota.effective_limit(jobs, limits)
    keep = quota.fitting(lines, limit)
    if keep < len(lines):
        resized = await quota.shrink(manager, backend, record, keep, view)
        if resized is None:
            return True
        record, lines = resized, lines[:keep]
    if before_create is not None and not await before_create():
        logger.warning("batch create not sent (before_create said no); the job stays CREATED")
        return False
    input_file = record.input_file
    fresh = input_file is None
    if input_file is None:
        view.uploaded()
        try:
            input_file = await backend.upload_input(lines, display_name=record.display_name)
        except ProviderError as exc:
            if isinstance(exc, AuthenticationError):
                raise
            if not is_retryable_status(exc.status) and exc.status is not None:
                await manager.fail(record, f"the provider refused the input file: {exc}", view)
                return True
            await defer(manager, record, exc, view, limits)
            return False
        noted = await jobs.note_job(
            JobNote(job_id=record.job_id, expected=JobStatus.CREATED, input_file=input_file)
        )
        if noted is None:  # the job moved on meanwhile: the file is nobody's
            await delete_files(backend, [input_file])
            return True
        record = noted
        view.record(record)
    # Written before the call: if we crash or the answer is lost, reconcile knows a
    # create may be in flight and waits ``create_grace`` before sending another.
    await jobs.mark_create_attempt(record.job_id, manager.now())
    try:
        remote = await backend.create_from_file(input_file, display_name=record.display_name)
    except ProviderError as exc:
        if refused_before_acting(exc.status):
            # Refused: certainly not created, a new attempt needs no grace.
            await jobs.mark_create_attempt(record.job_id, None)
            if isinstance(exc, AuthenticationError):
                raise
            if exc.status == 429 and exc.token_quota:
                return await quota.on_token_refusal(
                    manager, backend, record, lines, exc, view, limits
                )
            if not is_retryable_status(exc.status):
                if not fresh and exc.status in (400, 404):
                    await _forget_input(manager, backend, record, view)
                    return True
                await manager.fail(record, f"the provider refused the job: {exc}", view)
                return True
        await defer(manager, record, exc, view, limits)
        return False
    moved = await manager.move(
        record,
        JobTrigger.SUBMIT,
        view,
        stats={"sent": len(lines), SUBMITTED_AT: epoch_ms(manager.now())},
        drop_stats=(RETRY_AT,),
        remote_name=remote.name,
        input_file=remote.input_file,
    )
    if moved is None:
        await drop_unrecorded(manager, backend, record.job_id, remote)
    return True


async def drop_unrecorded(
    manager: BatchManager, backend: BatchBackend, job_id: str, remote: RemoteJob
) -> None:
    """Our create landed but the job had moved on meanwhile (another supervisor took
    over after our lease ran out, and submitted it again or failed it). Unless the
    job adopted *our* remote job, ours is a duplicate nobody will read: cancel and
    delete it (with its input file unless the job's own create used that file too),
    so no remote orphan is left running."""
    current = await manager.jobs.get_job(job_id)
    if current is not None and current.remote_name == remote.name:
        return  # adopted by display name: it is the job's own
    logger.warning("a batch create landed after its job moved on; deleting that remote job")
    try:
        await backend.cancel(remote.name)
    except ProviderError as exc:
        if exc.status not in (400, 404):  # already finished, or gone
            logger.warning("could not cancel the duplicate remote job: %s", exc)
    try:
        shared = current is not None and current.input_file == remote.input_file
        files = [f for f in (remote.input_file,) if f and not shared]
        await backend.cleanup(remote.name, files=files)
    except ProviderError as exc:
        logger.warning("could not delete the duplicate remote job: %s", exc)


async def defer(
    manager: BatchManager,
    record: JobRecord,
    exc: ProviderError,
    view: PassView,
    limits: JobLimits,
) -> None:
    """The job waits before its next create (see the module doc); its input stays."""
    refusals = record.stats.get(CREATE_REFUSALS, 0) + 1
    stats = {**dict(record.stats), CREATE_REFUSALS: refusals}
    stats.pop(RETRY_AT, None)
    delay = 0.0
    if limits.backoff or exc.retry_after is not None:
        delay = create_retry_delay(
            refusals,
            exc.retry_after,
            initial=limits.backoff_initial,
            cap=limits.backoff_max,
            rng=manager.rng,
        )
        stats[RETRY_AT] = epoch_ms(manager.now().timestamp() + delay)
    noted = await manager.jobs.note_job(
        JobNote(job_id=record.job_id, expected=JobStatus.CREATED, stats=stats)
    )
    if noted is not None:
        view.record(noted)
    logger.warning(
        "batch create refused (%s); the job stays CREATED with its input and waits %.3g s",
        exc.status or type(exc).__name__,
        delay,
        extra={"refusals": refusals, "retry_after": exc.retry_after},
    )


async def _forget_input(
    manager: BatchManager, backend: BatchBackend, record: JobRecord, view: PassView
) -> None:
    """The stored input is unusable: delete it; the next attempt uploads again."""
    logger.warning("the job's uploaded input was refused; it will be uploaded again")
    await delete_files(backend, [f for f in (record.input_file,) if f])
    noted = await manager.jobs.note_job(
        JobNote(job_id=record.job_id, expected=JobStatus.CREATED, clear_input_file=True)
    )
    if noted is not None:
        view.record(noted)


async def delete_files(backend: BatchBackend, files: list[str]) -> bool:
    """Delete remote files, logging a failure; whether every delete went through."""
    if not files:
        return True
    try:
        await backend.cleanup(None, files=files)
    except ProviderError as exc:
        logger.warning("could not delete a remote input file: %s", exc)
        return False
    return True
