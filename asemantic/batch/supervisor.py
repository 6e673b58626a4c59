"""The batch supervisor: a long-running loop that flushes, polls and applies.

``async with BatchSupervisor(core) as supervisor:`` holds the database's supervisor
lease and owns one task group in which a loop runs *ticks*: reconcile what a crash may
have left, flush the queue into jobs, poll the active jobs (at most
``max_concurrent_jobs`` requests at a time), apply results and clean up. Ticks are
spaced by a jittered ``poll_interval``. Leaving the ``async with`` block stops the loop
at its next await (a write in progress commits or rolls back as a whole), releases the
lease and leaves remote jobs running: the next supervisor resumes them.

A failing job never stops the others. A failure that would repeat on every tick (a
rejected key, a full disk) pauses the loop with a growing delay and is reported in
:attr:`BatchSupervisor.health` instead of spinning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from asemantic.batch.hooks import TransitionCallback
from asemantic.batch.manager import BatchManager, SyncReport
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import ACTIVE_STATUSES, JobStatus
from asemantic.errors import (
    AuthenticationError,
    ProviderError,
    StoreError,
    SupervisorLeaseError,
)

if TYPE_CHECKING:
    from asemantic.core import SemanticCore

__all__ = ["BatchSupervisor", "SupervisorConfig", "SupervisorHealth"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    """How a supervisor paces itself.

    ``max_wait`` is how long a queue smaller than ``min_batch_size`` may wait before it
    is flushed anyway. ``lease_ttl`` is how long the lease outlives a supervisor that
    stops renewing it (a crashed or frozen process). ``lease_wait`` is how long
    ``__aenter__`` waits for another supervisor's lease (0: fail at once).
    Per-call timeouts live in :class:`~asemantic.config.GeminiSettings` (``retry``).
    """

    poll_interval: float = 30.0
    jitter: float = 0.2
    min_batch_size: int = 10
    max_batch_size: int = 10_000
    max_concurrent_jobs: int = 50
    max_wait: float = 300.0
    lease_ttl: float = 60.0
    lease_wait: float = 0.0
    pause_initial: float = 5.0
    pause_max: float = 300.0
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.lease_ttl <= 0:
            raise ValueError("poll_interval and lease_ttl must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be within [0, 1)")
        if self.max_concurrent_jobs < 1 or self.min_batch_size < 1 or self.max_batch_size < 1:
            raise ValueError("sizes and concurrency must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorHealth:
    """The supervisor's state, for a health endpoint or a progress view."""

    running: bool
    ticks: int
    paused_reason: str | None
    last_error: str | None
    last_tick_at: float | None


class BatchSupervisor:
    """Runs the batch pipeline in the background while the ``async with`` block lasts."""

    def __init__(
        self,
        core: SemanticCore,
        config: SupervisorConfig | None = None,
        *,
        owner: str | None = None,
        rng: random.Random | None = None,
        **overrides: Any,
    ) -> None:
        config = config or SupervisorConfig()
        self._config = replace(config, **overrides) if overrides else config
        self._core = core
        self._manager: BatchManager = core.batch_manager  # checks the batch key
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = rng or random.Random()
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop = anyio.Event()
        self._wake = anyio.Event()
        self._ticks = 0
        self._paused_reason: str | None = None
        self._last_error: str | None = None
        self._last_tick_at: float | None = None
        self._below_min_since: float | None = None
        self._reconciled = False
        self._running = False
        self._tick_done = anyio.Event()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"BatchSupervisor({state}, ticks={self._ticks})"

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
            paused_reason=self._paused_reason,
            last_error=self._last_error,
            last_tick_at=self._last_tick_at,
        )

    def on_transition(self, callback: TransitionCallback) -> TransitionCallback:
        """Call ``callback(event)`` after each persisted job transition, in order."""
        return self._manager.on_transition(callback)

    def wake(self) -> None:
        """Start the next tick now instead of at the end of the current interval."""
        self._wake.set()

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._acquire_lease()
        stack = contextlib.AsyncExitStack()
        try:
            stack.push_async_callback(self._release_lease)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            group.start_soon(self._run)
            group.start_soon(self._renew_lease_forever)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop after the current step, release the lease; remote jobs keep running."""
        stack, self._stack = self._stack, None
        self._stop.set()
        self._wake.set()
        self._running = False
        if stack is not None:
            await stack.aclose()

    async def _acquire_lease(self) -> None:
        deadline = time.monotonic() + self._config.lease_wait
        while True:
            lease = await self._core.batch_jobs.acquire_lease(
                self._owner, ttl=self._config.lease_ttl, now=time.time()
            )
            if lease.acquired:
                return
            wait = lease.expires_at - time.time()
            if time.monotonic() + min(wait, 1.0) > deadline:
                raise SupervisorLeaseError(
                    f"another supervisor ({lease.owner}) holds this database's lease for "
                    f"{max(0.0, wait):.0f} more seconds; stop it or wait (lease_wait=)"
                )
            await anyio.sleep(min(max(wait, 0.05), 1.0))

    async def _release_lease(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._core.batch_jobs.release_lease(self._owner)
            except StoreError:
                logger.warning("could not release the supervisor lease; it will expire")

    async def _renew_lease_forever(self) -> None:
        interval = self._config.lease_ttl / 3
        while not self._stop.is_set():
            with anyio.move_on_after(interval):
                await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                lease = await self._core.batch_jobs.acquire_lease(
                    self._owner, ttl=self._config.lease_ttl, now=time.time()
                )
            except StoreError:
                logger.warning("lease renewal failed; retrying")
                continue
            if not lease.acquired:
                logger.error("supervisor lease lost to another process; stopping")
                self._last_error = f"lease lost to {lease.owner}"
                self._stop.set()
                self._wake.set()
                return

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        pause = 0.0
        while not self._stop.is_set():
            try:
                await self.run_once()
                pause = 0.0
                self._paused_reason = None
                delay = self._jittered(self._config.poll_interval)
            except (AuthenticationError, StoreError) as exc:
                pause = min(self._config.pause_max, max(self._config.pause_initial, pause * 2))
                self._paused_reason = f"{type(exc).__name__}: {exc}"
                self._last_error = self._paused_reason
                logger.error("batch supervisor paused by a persistent failure")  # noqa: TRY400
                delay = pause
            except ProviderError as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("batch supervisor tick failed; retrying next tick")
                delay = self._jittered(self._config.poll_interval)
            except Exception as exc:
                pause = min(self._config.pause_max, max(self._config.pause_initial, pause * 2))
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._paused_reason = self._last_error
                logger.exception("batch supervisor tick failed unexpectedly")
                delay = pause
            self._tick_done.set()
            self._tick_done = anyio.Event()
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _jittered(self, interval: float) -> float:
        spread = interval * self._config.jitter
        return max(0.0, interval + self._rng.uniform(-spread, spread))

    async def run_once(self) -> SyncReport:
        """One tick: reconcile, flush, poll and apply, clean up."""
        manager = self._manager
        if not self._reconciled:
            await manager.reconcile()
            self._reconciled = True
        elif await self._core.batch_jobs.jobs((JobStatus.CREATED,)):
            await manager.reconcile()
        await self._flush()
        report = await manager.sync_status()
        self._ticks += 1
        self._last_tick_at = time.time()
        if report.auth_error is not None:
            raise report.auth_error
        return report

    async def _flush(self) -> None:
        queued = len(await self._core.batch_jobs.queued_chunks())
        force = False
        if 0 < queued < self._config.min_batch_size:
            now = time.monotonic()
            self._below_min_since = self._below_min_since or now
            force = now - self._below_min_since >= self._config.max_wait
        else:
            self._below_min_since = None
        if queued:
            await self._manager.flush_queue(
                min_size=self._config.min_batch_size,
                max_size=self._config.max_batch_size,
                force=force,
            )
            if force:
                self._below_min_since = None

    async def wait_until_idle(self) -> None:
        """Wait until no chunk is PENDING and no job is active.

        Bound the wait yourself: ``with anyio.fail_after(60): await sup.wait_until_idle()``.
        """
        while True:
            counts = await self._core.store.count_chunks_by_status()
            active = await self._core.batch_jobs.jobs(ACTIVE_STATUSES)
            if not counts.get(EmbeddingStatus.PENDING.value) and not active:
                return
            if not self._running:
                raise RuntimeError("the supervisor is not running")
            self.wake()
            await self._tick_done.wait()

