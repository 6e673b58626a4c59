"""The batch supervisor: a long-running loop that flushes, polls and applies.

``async with BatchSupervisor(core) as supervisor:`` (or ``BatchSupervisor(manager)``)
works through the core's :class:`~asemantic.batch.manager.BatchManager` and the job
store behind it, and nothing else of the core. It takes the database's supervisor
lease and owns one task group with two tasks: a loop that runs *ticks* (reconcile what
a crash may have left, flush the queue into jobs, poll the active jobs with at most
``max_concurrent_jobs`` requests at a time, apply results, clean up) spaced by a
jittered ``poll_interval``, and a lease keeper that renews the lease every third of
``lease_ttl``.

Decisions:

* **Stopping is two-phase.** Leaving the block (or :meth:`BatchSupervisor.aclose`)
  asks the loop to stop: no new step starts, and the step in progress gets
  ``stop_timeout`` seconds to finish. Then whatever is left is cancelled; a write
  cancelled half-way is rolled back as a whole by the store, so the database is always
  consistent and unlocked. The lease is released (shielded, bounded) and remote jobs
  keep running: the next supervisor resumes them from the database. When the block is
  left *because of cancellation* there is no grace period: cancellation is prompt.
* **One snapshot per tick.** A tick reads the database once
  (:meth:`BatchManager.read_view`) and hands that view to reconcile, flush, poll and
  clean-up, which keep it current with their own writes (:mod:`asemantic.batch.view`).
* **One hook registry.** Hooks added with :meth:`BatchSupervisor.on_transition` are
  added to the manager's registry while the supervisor runs and removed when it stops.
* **One tick at a time.** The loop and any :meth:`BatchSupervisor.run_once` call
  share a lock. Outside the ``async with`` block, :meth:`run_once` takes the lease for
  that one tick, so even a one-shot pass never runs beside another supervisor.
* **The lease is checked before every tick and before every remote create**, and a
  lost lease stops the loop: :mod:`asemantic.batch.lease` (the :class:`SupervisorLease`
  the supervisor owns) says how and why.
* **Failures back off**, one that retrying will not cure also sets
  ``health.paused_reason``, and a database closed under a running supervisor (close the
  supervisor before the core) stops it: :mod:`asemantic.batch.failures` (the
  :class:`TickFailures` the supervisor owns) says how, and how failure messages are kept
  free of API keys. While backing off, :meth:`BatchSupervisor.wake` is ignored, so code
  that wakes the supervisor in a loop cannot turn a pause into a request storm.
* A failing job never stops the others: the manager isolates provider errors per job.
* **Every embedding space.** With a :class:`~asemantic.SemanticCore` whose knowledge
  base holds spaces besides space 1 (a migration, :mod:`asemantic.domain.spaces`), each
  tick runs space 1's pass, then reconcile, flush, poll and clean-up for each of those
  spaces through its own manager (``core.space_managers()``), under the same lease. A
  backfill queue is flushed at once; the supervisor is idle only when every space is.
  Those managers share space 1's hook registry, so a hook sees the transitions of
  every space's jobs (:attr:`TransitionEvent.space_id` says which).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Protocol, Self, cast

import anyio

from asemantic.batch.deadline import HasOnline, OnlineFallback
from asemantic.batch.failures import TickFailures
from asemantic.batch.holders import owner_id
from asemantic.batch.hooks import TransitionCallback
from asemantic.batch.lease import SupervisorLease
from asemantic.batch.manager import BatchManager, SyncReport
from asemantic.batch.submit import create_wait_until
from asemantic.batch.supervisor_config import SupervisorConfig, SupervisorHealth, resolve_config
from asemantic.batch.view import PassView
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import jittered_delay, require_batch_key
from asemantic.errors import InvalidInputError, SupervisorLeaseError

__all__ = ["BatchSupervisor", "SupervisorConfig", "SupervisorHealth"]


class HasSpaceManagers(Protocol):
    """A core whose knowledge base may hold several spaces (``SemanticCore``)."""

    async def space_managers(self) -> list[BatchManager]: ...


class HasBatchManager(Protocol):
    """What a supervisor needs of a :class:`~asemantic.SemanticCore`: its manager."""

    @property
    def batch_manager(self) -> BatchManager: ...


def _default_owner() -> str:
    return owner_id()


def _fallback_for(core: object, config: SupervisorConfig) -> OnlineFallback | None:
    """The deadline's online fallback, on the core's embedder and store (or None)."""
    if config.deadline is None:
        return None
    if not all(hasattr(core, name) for name in ("embedder", "store", "config")):
        raise InvalidInputError("deadline= needs a SemanticCore (its online embedder)")
    return OnlineFallback(
        cast(HasOnline, core), deadline=config.deadline, budget_usd=config.deadline_budget_usd
    )


class BatchSupervisor:
    """Runs the batch pipeline in the background while the ``async with`` block lasts.

    ``core`` is a :class:`~asemantic.SemanticCore` (its ``batch_manager`` is used) or a
    :class:`~asemantic.batch.manager.BatchManager`. ``config`` (a
    :class:`SupervisorConfig`) and keyword ``overrides`` of its fields set the pace;
    ``owner`` names this supervisor in the lease (host:pid:start:random by default, so
    that a restarted supervisor on the same host sees when it is dead); ``rng``
    drives the jitter (pass a seeded one for reproducible runs).
    Without a batch key it refuses at once with
    ``ValueError("Batch operations require a dedicated API key")``.
    """

    def __init__(
        self,
        core: HasBatchManager | BatchManager,
        config: SupervisorConfig | None = None,
        *,
        owner: str | None = None,
        rng: random.Random | None = None,
        **overrides: Any,
    ) -> None:
        self._config = resolve_config(config, overrides)
        manager = core if isinstance(core, BatchManager) else core.batch_manager
        keys = manager.keys
        require_batch_key(keys)
        assert keys is not None
        if owner is not None and (not isinstance(owner, str) or not owner.strip()):
            raise InvalidInputError("owner must be a non-empty string")
        self._manager = manager
        self._spaces = cast(HasSpaceManagers, core) if hasattr(core, "space_managers") else None
        self._reconciled_spaces: set[int] = set()
        self._owner = owner or _default_owner()
        self._rng = rng or random.Random()
        self._tick_lock = anyio.Lock()
        self._hooks: list[TransitionCallback] = []
        self._hooks_live = False
        self._entering = False
        self._stack: contextlib.AsyncExitStack | None = None
        self._running = False
        self._ticks = 0
        self._failures = TickFailures(self._config, keys, self._rng)
        self._last_tick_at: float | None = None
        self._below_min_since: float | None = None
        self._reconciled = False
        self._reconciled_spaces = set()
        self._limits = self._config.job_limits()
        self._fallback = _fallback_for(core, self._config)
        self._create_wait_until: float | None = None
        self._waiting_jobs = 0
        self._lease = SupervisorLease(
            manager.jobs,
            owner=self._owner,
            ttl=self._config.lease_ttl,
            wait=self._config.lease_wait,
            on_lost=self._on_lease_lost,
        )
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        self._stop = anyio.Event()
        self._wake = anyio.Event()
        self._tick_done = anyio.Event()
        self._stopped = anyio.Event()
        self._loop_scope = anyio.CancelScope()
        self._keeper_scope = anyio.CancelScope()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"BatchSupervisor({state}, owner={self._owner!r}, ticks={self._ticks})"

    @property
    def config(self) -> SupervisorConfig:
        return self._config

    @property
    def manager(self) -> BatchManager:
        return self._manager

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def health(self) -> SupervisorHealth:
        return SupervisorHealth(
            running=self._running,
            ticks=self._ticks,
            paused_reason=self._failures.paused_reason,
            last_error=self._failures.last_error,
            last_tick_at=self._last_tick_at,
            failures=self._failures.count,
            backoff=self._failures.backoff,
            create_wait_until=self._create_wait_until,
            waiting_jobs=self._waiting_jobs,
            online_fallback=self._fallback.spend if self._fallback is not None else None,
        )

    def on_transition(self, callback: TransitionCallback) -> TransitionCallback:
        """Call ``callback(event)`` after each persisted job transition, in order.

        Plain and async callables both work; one that raises is logged and skipped.
        Events are delivered one at a time: every hook has seen an event before any
        hook sees the next one, although jobs are polled concurrently.

        The hooks belong to this supervisor: they see the transitions made while it
        runs (or during its :meth:`run_once`), and none after it stopped, so a new
        supervisor on the same core starts without the old one's hooks. For hooks that
        outlive supervisors use ``core.batch_manager.on_transition``. Hooks run inside
        the tick: a slow hook slows the pipeline down, and a hook must not call
        :meth:`run_once` or :meth:`aclose` (they wait for the tick it runs in).
        """
        if not callable(callback):
            raise TypeError("a transition hook must be callable")
        self._hooks.append(callback)
        if self._hooks_live:
            self._manager.hooks.add(callback)
        return callback

    def wake(self) -> None:
        """Start the next tick now instead of at the end of the current interval.

        Ignored while the supervisor backs off after a failure.
        """
        self._wake.set()

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None or self._entering:
            raise RuntimeError("this supervisor is already running")
        self._entering = True
        try:
            return await self._enter()
        finally:
            self._entering = False

    async def _enter(self) -> Self:
        self._reset_run_state()
        self._reconciled = False
        self._reconciled_spaces = set()
        self._below_min_since = None
        await self._lease.take()
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(self._lease.release)
            stack.enter_context(self._hooks_attached())
            group = await stack.enter_async_context(anyio.create_task_group())
            self._running = True
            group.start_soon(self._run, name="asemantic batch supervisor loop")
            group.start_soon(self._keep_lease, name="asemantic batch supervisor lease")
        except BaseException:
            self._running = False
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cancelled = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
        await self._shutdown(grace=not cancelled)

    async def aclose(self) -> None:
        """Stop after the current step (at most ``stop_timeout`` s), release the lease.

        Remote jobs keep running; the next supervisor resumes them. Idempotent.
        """
        await self._shutdown(grace=True)

    async def _shutdown(self, *, grace: bool) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._stop.set()
        self._wake.set()
        try:
            if grace and self._config.stop_timeout > 0:
                with anyio.move_on_after(self._config.stop_timeout):
                    await self._stopped.wait()
        finally:
            self._loop_scope.cancel()
            self._keeper_scope.cancel()
            try:
                await stack.aclose()
            finally:
                self._running = False

    # --- the lease (see asemantic.batch.lease) ----------------------------------------

    def _on_lease_lost(self, message: str) -> None:
        """The lease's ``on_lost``: another supervisor owns the database now; stop."""
        self._failures.last_error = message
        self._stop.set()
        self._wake.set()
        self._loop_scope.cancel()

    async def _keep_lease(self) -> None:
        with self._keeper_scope:
            await self._lease.keep(self._stop)

    @contextlib.asynccontextmanager
    async def _lease_for_one_tick(self) -> AsyncIterator[None]:
        await self._lease.take()
        try:
            with self._hooks_attached():
                yield
        finally:
            await self._lease.release()

    @contextlib.contextmanager
    def _hooks_attached(self) -> Iterator[None]:
        """This supervisor's hooks sit in the manager's registry meanwhile."""
        registry = self._manager.hooks
        for callback in self._hooks:
            registry.add(callback)
        self._hooks_live = True
        try:
            yield
        finally:
            self._hooks_live = False
            for callback in self._hooks:
                with contextlib.suppress(ValueError):  # already removed by someone else
                    registry.remove(callback)

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            with self._loop_scope:
                while not self._stop.is_set():
                    delay = await self._step()
                    if self._stop.is_set():
                        break
                    self._finish_tick()
                    with anyio.move_on_after(delay):
                        await (self._stop if self._failures.count else self._wake).wait()
                    self._wake = anyio.Event()
        finally:
            self._running = False
            self._stop.set()
            self._stopped.set()
            self._finish_tick()

    def _finish_tick(self) -> None:
        self._tick_done.set()
        self._tick_done = anyio.Event()

    async def _step(self) -> float:
        """One guarded tick; returns the delay before the next one."""
        try:
            if not await self._lease.ensure():
                return 0.0
            async with self._tick_lock:
                await self._tick(stoppable=True)
        except SupervisorLeaseError:
            return 0.0  # lost during the tick: the loop stops (see _on_lease_lost)
        except Exception as exc:  # noqa: BLE001 - the tick boundary: judged, logged, paced
            return self._failures.record(exc, stop=self._stop)
        self._failures.reset()
        return jittered_delay(self._config.poll_interval, self._config.jitter, self._rng)

    async def run_once(self) -> SyncReport:
        """One tick: reconcile, flush, poll and apply, clean up.

        While the supervisor runs, this waits for the loop's tick in progress and then
        runs one more. Outside the ``async with`` block it holds the lease for the tick
        (raising :class:`SupervisorLeaseError` if another supervisor has it). Errors
        propagate to the caller.
        """
        if self._running:
            async with self._tick_lock:
                return await self._tick(stoppable=False)
        async with self._lease_for_one_tick(), self._tick_lock:
            return await self._tick(stoppable=False)

    async def _tick(self, *, stoppable: bool) -> SyncReport:
        manager = self._manager
        view = await manager.read_view()
        created = view.jobs(JobStatus.CREATED)
        # While creates wait after a refusal, a job that surely was not created needs no
        # lookup; one whose create may have landed (no answer) still does.
        gated = create_wait_until(view, time.time()) is not None and not any(
            job.create_attempted_at for job in created
        )
        if not self._reconciled or (created and not gated):
            await manager.reconcile(
                before_create=self._lease.before_create, view=view, limits=self._limits
            )
            self._reconciled = True
        report = SyncReport()
        if not (stoppable and self._stop.is_set()):
            await self._flush(view)
        if self._lease.lost:  # found out right before a create
            raise SupervisorLeaseError(self._failures.last_error or "the supervisor lease was lost")
        if not (stoppable and self._stop.is_set()):
            report = await manager.sync_status(
                max_concurrent=self._config.max_concurrent_jobs, view=view, limits=self._limits
            )
        fallback = self._fallback
        due = fallback is not None and fallback.due(manager.now())
        if due and fallback is not None and await fallback.run(manager.jobs, manager.now()):
            await manager.retire_emptied()
        self._create_wait_until = create_wait_until(view, time.time())
        waiting = view.jobs(JobStatus.CREATED) if self._create_wait_until else []
        self._waiting_jobs = len(waiting)
        if report.auth_error is not None:
            raise report.auth_error
        if not (stoppable and self._stop.is_set()):
            for space_manager in await self._space_managers():
                await self._tick_space(space_manager)
        self._ticks += 1
        self._last_tick_at = time.time()
        return report

    async def _space_managers(self) -> list[BatchManager]:
        return await self._spaces.space_managers() if self._spaces is not None else []

    async def _tick_space(self, manager: BatchManager) -> None:
        """One pass for a space other than 1: reconcile, flush at once, poll, clean up."""
        view = await manager.read_view()
        await manager.reconcile(
            before_create=self._lease.before_create, view=view, limits=self._limits
        )
        if view.queued:
            await manager.flush_queue(
                min_size=1,
                max_size=self._config.max_batch_size,
                force=True,
                before_create=self._lease.before_create,
                view=view,
                limits=self._limits,
            )
        if self._lease.lost:
            raise SupervisorLeaseError(self._failures.last_error or "the supervisor lease was lost")
        report = await manager.sync_status(
            max_concurrent=self._config.max_concurrent_jobs, view=view, limits=self._limits
        )
        if report.auth_error is not None:
            raise report.auth_error

    async def _flush(self, view: PassView) -> None:
        queued = len(view.queued)
        if queued == 0:
            self._below_min_since = None
            return
        force = False
        if queued < self._config.min_batch_size:
            now = time.monotonic()
            if self._below_min_since is None:
                self._below_min_since = now
            force = now - self._below_min_since >= self._config.max_wait
        else:
            self._below_min_since = None
        created = await self._manager.flush_queue(
            min_size=self._config.min_batch_size,
            max_size=self._config.max_batch_size,
            force=force,
            before_create=self._lease.before_create,
            view=view,
            limits=self._limits,
        )
        if created:
            self._below_min_since = None

    # --- waiting ----------------------------------------------------------------------

    async def wait_until_idle(self) -> None:
        """Wait until nothing is left to do: no chunk PENDING, no job active or uncleaned.

        It never speeds the loop up (call :meth:`wake` for that), and a queue smaller
        than ``min_batch_size`` counts as work until ``max_wait`` flushes it. Raises
        ``RuntimeError`` if the supervisor is not running, or stops while waiting
        (its lease was taken over, or it was closed). Bound the wait yourself:
        ``with anyio.fail_after(60): await supervisor.wait_until_idle()``.
        """
        while True:
            tick = self._tick_done
            if await self._idle():
                return
            if not self._running:
                reason = f": {self._failures.last_error}" if self._failures.last_error else ""
                raise RuntimeError(f"the supervisor is not running{reason}")
            await tick.wait()

    async def idle(self) -> bool:
        """Whether nothing is left to do now, in any embedding space: no chunk PENDING,
        no job active or uncleaned (one read; it does not wait)."""
        return await self._idle()

    async def _idle(self) -> bool:
        if not (await self._manager.jobs.snapshot()).idle:
            return False
        for manager in await self._space_managers():
            if not (await manager.jobs.snapshot()).idle:
                return False
        return True
