"""The batch manager: pending chunks -> Batch API jobs -> vectors, losing nothing.

One pass of work is split in three public calls, each safe to repeat and to interrupt:

* :meth:`BatchManager.flush_queue` groups PENDING chunks that belong to no job into jobs.
  Each job row is committed as CREATED, with a deterministic display name and its chunks
  assigned, *before* the remote create call; the create is then made once.
* :meth:`BatchManager.sync_status` polls every active job concurrently (at most
  ``max_concurrent`` requests at a time), applies finished results slice by slice (each
  slice's vectors and chunk statuses in one transaction), hands chunks of failed jobs
  back to the queue, and deletes remote files and jobs only after the local commit.
* :meth:`BatchManager.reconcile` repairs what a crash can leave: a CREATED job whose
  create may or may not have happened is looked up by display name and adopted (never
  created twice); one that was never created is submitted; remote files of this
  database that no job needs any more are deleted.

Both calls that create remote jobs take ``before_create``: a check awaited right before
each create (after the local checks, before anything is written or sent). When it says
no, that job and the rest of the pass stay CREATED for a later reconcile. The supervisor
passes its lease check, so a process frozen in the middle of a pass, whose lease another
supervisor took meanwhile, sends no create when it wakes.

The create path (one upload per job, waiting after a refusal) is
:mod:`asemantic.batch.submit`'s, sizing jobs to the token quota :mod:`asemantic.batch.quota`'s,
and jobs that are too old, in odd states, duplicated or hard to delete
:mod:`asemantic.batch.stuck`'s; each call takes the :class:`~asemantic.batch.limits.JobLimits`
to work within (``limits=``, else the manager's).

Every job transition is decided by the state machine (:mod:`asemantic.domain.jobs`),
persisted, and only then announced to hooks.

Each call takes an optional ``view`` (a :class:`~asemantic.batch.view.PassView`): the
supervisor reads the database once per tick and hands the same view to every step;
called alone, each reads its own. Concurrency uses anyio throughout ``asemantic.batch``
(locks, the semaphore and the task group of :meth:`BatchManager.sync_status`, as in the
supervisor and its lease): one cancellation model, cancel scopes, for a whole tick.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from asemantic.batch import quota, stuck
from asemantic.batch.hooks import HookRegistry, TransitionCallback
from asemantic.batch.limits import JobLimits
from asemantic.batch.submit import LineKeys, submit_job
from asemantic.batch.view import PassView
from asemantic.domain.events import TransitionEvent
from asemantic.domain.jobs import JobStatus, JobTrigger, next_status, plan_for_remote
from asemantic.domain.linekeys import line_key
from asemantic.domain.policy import (
    RetryPolicy,
    plan_batches,
    require_batch_key,
    should_flush,
)
from asemantic.errors import AuthenticationError, ProviderError, StoreError
from asemantic.keys import GoogleKeyring
from asemantic.ports import (
    BatchBackend,
    JobChange,
    JobRecord,
    JobStore,
    RemoteFile,
    ResultCounts,
)

__all__ = ["BatchManager", "CreateCheck", "SyncReport"]

logger = logging.getLogger(__name__)

DISPLAY_PREFIX = "asemantic"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
"""Bytes of JSONL per job: far under the Files API's 2 GB per file."""
DEFAULT_MAX_CONCURRENT = 50
"""Jobs :meth:`BatchManager.sync_status` handles at a time unless told otherwise
(a supervisor passes its ``max_concurrent_jobs``)."""

CreateCheck = Callable[[], Awaitable[bool]]
"""Awaited right before each remote create; False: send no create, stop submitting."""


@dataclass(slots=True, kw_only=True)
class SyncReport:
    """What one :meth:`BatchManager.sync_status` pass did."""

    polled: int = 0
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    cleaned: int = 0
    auth_error: AuthenticationError | None = None


class BatchManager:
    """Deferred embedding through the Batch API, for one database.

    Reach it as ``core.batch_manager``. Every call first checks the batch key and raises
    ``ValueError("Batch operations require a dedicated API key")`` without one.
    """

    def __init__(
        self,
        *,
        jobs: JobStore,
        backend_factory: Callable[[], BatchBackend],
        keys: GoogleKeyring | None,
        retry: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        create_grace: float = 120.0,
        clock: Callable[[], datetime] | None = None,
        limits: JobLimits | None = None,
        rng: random.Random | None = None,
        space_id: int = 1,
        hooks: HookRegistry | None = None,
    ) -> None:
        self._jobs = jobs
        self._space_id = space_id
        self._backend_factory = backend_factory
        self._backend: BatchBackend | None = None
        self._keys = keys
        self._retry = retry or RetryPolicy()
        self._max_bytes = max_bytes
        self._create_grace = create_grace
        self._clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or JobLimits(backoff=False)
        """The limits a call works within unless it is given its own (by default no
        backoff of its own: see :class:`~asemantic.batch.limits.JobLimits`)."""
        self.rng = rng or random.Random()
        """Jitters the waits after refused creates."""
        self._hooks = hooks if hooks is not None else HookRegistry()
        self._flush_lock = anyio.Lock()
        self._prefix: str | None = None

    def __repr__(self) -> str:
        return f"BatchManager(max_bytes={self._max_bytes})"

    @property
    def hooks(self) -> HookRegistry:
        """The one registry of transition hooks (a supervisor attaches its own here;
        the managers of a knowledge base's other spaces share space 1's)."""
        return self._hooks

    @property
    def space_id(self) -> int:
        """The embedding space this manager's jobs embed for (its events carry it)."""
        return self._space_id

    @property
    def jobs(self) -> JobStore:
        """The job store this manager works on."""
        return self._jobs

    @property
    def keys(self) -> GoogleKeyring | None:
        return self._keys

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def now(self) -> datetime:
        """The manager's clock."""
        return self._clock()

    def on_transition(self, callback: TransitionCallback) -> TransitionCallback:
        """Call ``callback(event)`` after every persisted job transition (in order)."""
        return self._hooks.add(callback)

    def _backend_now(self) -> BatchBackend:
        require_batch_key(self._keys)
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    async def display_prefix(self) -> str:
        """``asemantic-<database id>-``: names every remote object of this database."""
        if self._prefix is None:
            database_id = await self._jobs.database_id()
            self._prefix = f"{DISPLAY_PREFIX}-{database_id[:12]}-"
        return self._prefix

    async def read_view(self) -> PassView:
        """Read the database once for a pass (see :mod:`asemantic.batch.view`)."""
        return PassView(await self._jobs.snapshot())

    async def _remote_files(self, backend: BatchBackend, view: PassView) -> list[RemoteFile]:
        prefix = await self.display_prefix()
        return await view.remote_files(lambda: backend.find_files_by_prefix(prefix))

    # --- flush ------------------------------------------------------------------------

    async def flush_queue(
        self,
        min_size: int = 10,
        max_size: int = 10_000,
        force: bool = False,
        *,
        before_create: CreateCheck | None = None,
        view: PassView | None = None,
        limits: JobLimits | None = None,
    ) -> list[str]:
        """Group queued PENDING chunks into new jobs and submit them; return their ids.

        Below ``min_size`` queued chunks and without ``force``, nothing happens. A job
        whose create fails stays CREATED: :meth:`reconcile` adopts or resubmits it. So
        does every job not yet submitted when ``before_create`` returns False. Jobs
        hold at most the tokens ``limits`` (and the limit learned from the provider)
        allow.
        """
        limits = limits or self.limits
        backend = self._backend_now()
        if min_size < 1 or max_size < 1:
            raise ValueError("min_size and max_size must be at least 1")
        async with self._flush_lock:
            view = view or await self.read_view()
            if not should_flush(len(view.queued), min_size=min_size, force=force):
                return []
            queued = view.take_queue()
            max_bytes = self._max_bytes
            token_limit = await quota.effective_limit(self._jobs, limits)
            if token_limit is not None:
                max_bytes = max(1, min(max_bytes, token_limit * quota.BYTES_PER_TOKEN))
            groups = plan_batches(
                [(chunk.chunk_id, chunk.size) for chunk in queued],
                max_size=max_size,
                max_bytes=max_bytes,
            )
            prefix = await self.display_prefix()
            created: list[JobRecord] = []
            for chunk_ids in groups:
                job_id = str(uuid.uuid4())
                record = await self._jobs.create_job(
                    job_id=job_id, display_name=f"{prefix}{job_id}", chunk_ids=chunk_ids
                )
                if record is not None:
                    view.record(record)
                    created.append(record)
            for record in created:
                if not await submit_job(self, backend, record, before_create, view, limits):
                    break
            return [record.job_id for record in created]

    # --- sync -------------------------------------------------------------------------

    async def sync_status(
        self,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        view: PassView | None = None,
        limits: JobLimits | None = None,
    ) -> SyncReport:
        """Poll active jobs concurrently, apply finished ones, clean up remote leftovers.

        At most ``max_concurrent`` jobs are handled at a time. A job past
        ``limits.max_job_age`` is cancelled and its chunks queued again; one in an odd
        remote state is polled with backoff (see :mod:`asemantic.batch.stuck`).
        """
        backend = self._backend_now()
        if isinstance(max_concurrent, bool) or max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        limits = limits or self.limits
        view = view or await self.read_view()
        report = SyncReport()
        now = self._clock().timestamp()
        active = [
            record
            for record in view.jobs(JobStatus.SUBMITTED, JobStatus.PROCESSING)
            if stuck.poll_due(record, now) or stuck.too_old(record, now, limits)
        ]
        limit = anyio.Semaphore(max_concurrent)

        store_errors: list[StoreError] = []

        async def one(record: JobRecord) -> None:
            try:
                async with limit:
                    await self._sync_one(backend, record, report, view, limits)
            except AuthenticationError as exc:
                report.auth_error = exc
                report.errors[record.job_id] = str(exc)
            except ProviderError as exc:
                logger.warning("polling a batch job failed; it stays active")
                report.errors[record.job_id] = str(exc)
            except StoreError as exc:  # the database, not the job: surfaces below
                store_errors.append(exc)
                report.errors[record.job_id] = str(exc)
            except Exception as exc:
                logger.exception("handling a batch job failed; the others go on")
                report.errors[record.job_id] = f"{type(exc).__name__}: {exc}"

        async with anyio.create_task_group() as group:
            for record in active:
                group.start_soon(one, record)
        report.polled = len(active)
        if store_errors:
            raise store_errors[0]
        if report.auth_error is None:
            report.cleaned = await self.cleanup_finished(view=view)
        return report

    async def _sync_one(
        self,
        backend: BatchBackend,
        record: JobRecord,
        report: SyncReport,
        view: PassView,
        limits: JobLimits,
    ) -> None:
        assert record.remote_name is not None
        try:
            status = await backend.get_job_status(record.remote_name)
        except ProviderError as exc:
            if exc.status != 404 or isinstance(exc, AuthenticationError):
                raise
            await self.fail(record, "the remote batch job no longer exists", view)
            report.failed.append(record.job_id)
            return
        plan = plan_for_remote(record.status, status.state)
        if stuck.unfinished(status.state) and stuck.too_old(record, self.now().timestamp(), limits):
            await stuck.retire(
                self, backend, record, view, "the job was not done within max_job_age"
            )
            report.failed.append(record.job_id)
            return
        if plan.unknown:
            await stuck.note_odd_state(self, record, status.state, view, limits)
            return
        for trigger in plan.triggers_before_apply:
            if trigger is JobTrigger.FAIL:
                reason = plan.fail_reason or f"remote state {status.state}"
                await self.fail(record, reason, view)
                report.failed.append(record.job_id)
                return
            moved = await self.move(record, trigger, view)
            if moved is None:
                return
            record = moved
        if plan.apply_results:
            if not status.output_file:
                await self.fail(record, "the job succeeded but named no result file", view)
                report.failed.append(record.job_id)
                return
            try:
                await self._apply(backend, record, status.output_file, view)
            except ProviderError as exc:
                if exc.status != 404 or isinstance(exc, AuthenticationError):
                    raise
                # The result file is gone (deleted, or past the 48 h retention): what
                # was not applied goes back to the queue with the job failed.
                await self.fail(record, "the job's result file no longer exists", view)
                report.failed.append(record.job_id)
                return
            report.completed.append(record.job_id)

    async def _apply(
        self, backend: BatchBackend, record: JobRecord, output_file: str, view: PassView
    ) -> None:
        hashes = await self._jobs.job_hashes(record.job_id)
        # In the order the lines were sent (a result without a key may be matched by it).
        expected = LineKeys(line_key(chunk_id, content_hash) for chunk_id, content_hash in hashes)
        counts = ResultCounts()
        ready = failed = retried = stale = 0
        async for batch in backend.retrieve_results(
            output_file, expected_keys=expected, counts=counts
        ):
            applied = await self._jobs.apply_results(record.job_id, batch, retry=self._retry)
            ready += applied.ready
            failed += applied.failed
            retried += applied.retried
            stale += applied.stale
        stats = {
            **dict(record.stats),
            "succeeded": ready,
            "failed": failed,
            "retried": retried,
            "stale": stale,
            "missing": max(0, len(expected) - counts.succeeded - counts.failed),
            "malformed": counts.malformed,
            "unknown_keys": counts.unknown_keys,
        }
        await self.move(
            record,
            JobTrigger.COMPLETE,
            view,
            stats=stats,
            output_file=output_file,
            release_reason="the result file had no line for this chunk",
        )

    async def cleanup_finished(self, *, view: PassView | None = None) -> int:
        """Delete remote files and jobs of finished jobs (after their local commit).

        Besides the files a job row names, every file carrying the job's display name
        goes too: an upload retried after a lost response leaves a second copy. A
        refused delete is logged and not retried (see :mod:`asemantic.batch.stuck`).
        """
        backend = self._backend_now()
        view = view or await self.read_view()
        done = view.jobs(JobStatus.COMPLETED, JobStatus.FAILED)
        if not done:
            return 0
        remote_files = await self._remote_files(backend, view)
        cleaned = 0
        for record in done:
            files = {f for f in (record.input_file, record.output_file) if f}
            files.update(f.name for f in remote_files if f.display_name == record.display_name)
            if not await stuck.clean_job(self, backend, record, sorted(files)):
                continue
            await self._jobs.mark_cleaned(record.job_id)
            view.cleaned(record.job_id)
            cleaned += 1
        return cleaned

    async def retire_emptied(self, *, view: PassView | None = None) -> int:
        """Cancel and fail submitted jobs none of whose chunks is PENDING any more (they
        were embedded another way, such as online past a deadline); how many."""
        backend = self._backend_now()
        view = view or await self.read_view()
        retired = 0
        for record in view.jobs(JobStatus.SUBMITTED, JobStatus.PROCESSING):
            if not await self._jobs.job_chunks(record.job_id):
                reason = "every chunk of the job was embedded another way"
                await stuck.retire(self, backend, record, view, reason)
                retired += 1
        return retired

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(
        self,
        *,
        before_create: CreateCheck | None = None,
        view: PassView | None = None,
        limits: JobLimits | None = None,
    ) -> list[str]:
        """Adopt or resubmit CREATED jobs and remove remote files nobody needs.

        A CREATED job found remotely by its display name is adopted. One not found is
        submitted again, unless a create of unknown outcome was sent less than
        ``create_grace`` seconds ago (it may still land: wait rather than duplicate),
        or ``before_create`` returns False (then no more are submitted in this pass).
        Remote jobs that duplicate an active job's display name are cancelled and
        deleted. Returns the ids of the jobs it adopted or submitted.
        """
        backend = self._backend_now()
        limits = limits or self.limits
        async with self._flush_lock:
            view = view or await self.read_view()
            created = view.jobs(JobStatus.CREATED)
            handled: list[str] = []
            active = view.jobs(JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.PROCESSING)
            if active:
                by_name = await stuck.remote_by_name(backend, active)
                now = self._clock()
                for record in created:
                    remote = by_name.get(record.display_name)
                    if remote is not None:
                        await self.move(record, JobTrigger.SUBMIT, view, remote_name=remote.name)
                    elif self._create_may_be_in_flight(record, now):
                        continue
                    elif not await submit_job(self, backend, record, before_create, view, limits):
                        break
                    handled.append(record.job_id)
            await self._remove_orphan_files(backend, view)
            return handled

    def _create_may_be_in_flight(self, record: JobRecord, now: datetime) -> bool:
        attempted = record.create_attempted_at
        return attempted is not None and (now - attempted).total_seconds() < self._create_grace

    async def _remove_orphan_files(self, backend: BatchBackend, view: PassView) -> None:
        """Delete this database's remote files that no unfinished business needs."""
        files = await self._remote_files(backend, view)
        if not files:
            return
        wanted = {record.display_name for record in view.jobs()}
        orphans = [f.name for f in files if f.display_name not in wanted]
        if orphans:
            logger.info("removing remote files left behind by an earlier run")
            await backend.cleanup(None, files=orphans)

    # --- transitions ------------------------------------------------------------------

    async def fail(self, record: JobRecord, reason: str, view: PassView) -> JobRecord | None:
        """Fail the job; its PENDING chunks go back to the queue (or FAIL once spent)."""
        return await self.move(
            record, JobTrigger.FAIL, view, error_message=reason, release_reason=reason
        )

    async def move(
        self,
        record: JobRecord,
        trigger: JobTrigger,
        view: PassView,
        *,
        stats: Mapping[str, int] | None = None,
        drop_stats: Collection[str] = (),
        remote_name: str | None = None,
        input_file: str | None = None,
        output_file: str | None = None,
        error_message: str | None = None,
        release_reason: str | None = None,
    ) -> JobRecord | None:
        """Decide with the machine, persist, then tell the hooks. None: lost a race."""
        target = next_status(record.status, trigger)
        releases = target in (JobStatus.COMPLETED, JobStatus.FAILED)
        merged: dict[str, int] | None = None
        if stats or drop_stats:
            merged = {**dict(record.stats), **dict(stats or {})}
            for name in drop_stats:
                merged.pop(name, None)
        moved = await self._jobs.transition_job(
            JobChange(
                job_id=record.job_id,
                expected=record.status,
                to=target,
                at=self._clock(),
                stats=merged,
                remote_name=remote_name,
                input_file=input_file,
                output_file=output_file,
                error_message=error_message,
                release=self._retry if releases else None,
                release_reason=release_reason,
            )
        )
        if moved is None:
            logger.info("job changed under us; transition skipped")
            return None
        view.record(moved)
        await self._hooks.emit(
            TransitionEvent(
                job_id=moved.job_id,
                remote_name=moved.remote_name,
                from_status=record.status,
                to_status=moved.status,
                at=moved.updated_at,
                stats=dict(moved.stats),
                space_id=self._space_id,
            )
        )
        return moved

    async def aclose(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.aclose()
