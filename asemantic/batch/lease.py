"""The supervisor lease: at most one batch supervisor works on a database at a time.

A :class:`SupervisorLease` belongs to one :class:`~asemantic.batch.supervisor.BatchSupervisor`
and holds the database's lease row for it (``JobStore.acquire_lease`` and
``release_lease``): it takes the lease (waiting up to ``lease_wait`` for another
supervisor's to end), renews it, checks it, and releases it.

Decisions:

* **Taking the lease waits, then refuses clearly.** While another live supervisor holds
  it, taking it looks again every ``_LEASE_POLL`` seconds until ``lease_wait`` is over,
  then raises :class:`SupervisorLeaseError` naming the holder. A database busy past
  ``busy_timeout`` (:class:`StoreBusyError`) is retried the same way while ``lease_wait``
  lasts. Cancelled while taking it, the lease is released all the same: the row may have
  been committed although the answer never arrived.
* **The lease is checked before every tick and before every remote create.** Besides
  the keeper task (:meth:`SupervisorLease.keep`, renewing every third of ``lease_ttl``),
  the loop renews the lease itself when more than half of its time-to-live is gone, so a
  process frozen longer than ``lease_ttl`` (suspended laptop, ``SIGSTOP``) learns that
  its lease went to another supervisor before it does anything. The same check runs
  right before each remote create of a pass (the manager's ``before_create``), so a
  process frozen *in the middle* of a pass creates nothing when it wakes: a lease that
  ran out by the local clock sends no create in this pass (another supervisor may have
  taken the plan over meanwhile); renewing it then tells whether the supervisor carries
  on from its next tick or stops. The check costs no remote call and at most one small
  SQLite transaction. A lost lease cancels the step in progress and stops the loop
  (:meth:`BatchSupervisor.run_once` raises :class:`SupervisorLeaseError`);
  :attr:`BatchSupervisor.health` then says so.
* **A dead holder's lease is taken over at once.** When the holder is a process of
  this host that is gone (:mod:`asemantic.batch.holders`), the lease is taken without
  waiting for it to expire. The store only hands out an expired lease, so the take-over
  asks for it "as of" a moment just past the dead holder's expiry, with a time-to-live
  shortened to match: the new lease still ends ``lease_ttl`` from now, and the store's
  compare-and-set still refuses it if a live supervisor took the lease meanwhile (its
  expiry is later than the dead one's).
* **Releasing is shielded and bounded.** On stop the lease is released even while the
  stop is being cancelled, but for at most ``_RELEASE_TIMEOUT`` seconds; a release that
  fails or takes longer is left to expire after ``lease_ttl``.

Its records are logged under ``asemantic.batch.supervisor``, the logger they had before
the lease got its own module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

from asemantic.batch.holders import holder_is_dead
from asemantic.errors import StoreBusyError, SupervisorLeaseError
from asemantic.ports import JobStore, Lease

__all__ = ["SupervisorLease"]

logger = logging.getLogger("asemantic.batch.supervisor")

_LEASE_POLL = 0.2
"""Seconds between two looks at a lease held by another supervisor (``lease_wait``)."""
_TAKEOVER_MARGIN = 0.001
"""Seconds past a dead holder's expiry its lease is asked for "as of" (see the doc)."""
_RELEASE_TIMEOUT = 5.0
"""How long releasing the lease on stop may take before it is left to expire."""


class SupervisorLease:
    """The lease of one supervisor (``owner``) on the database behind ``jobs``.

    ``ttl`` and ``wait`` are the supervisor's ``lease_ttl`` and ``lease_wait``.
    ``on_lost(message)`` is called once the lease is found taken over by another
    supervisor; it should stop the supervisor, and ``message`` says who took it.
    """

    def __init__(
        self,
        jobs: JobStore,
        *,
        owner: str,
        ttl: float,
        wait: float,
        on_lost: Callable[[str], None],
    ) -> None:
        self._jobs = jobs
        self._owner = owner
        self._ttl = ttl
        self._wait = wait
        self._on_lost = on_lost
        self._expires_at = 0.0
        self._lost = False

    @property
    def lost(self) -> bool:
        """Whether another supervisor took the lease over since it was last taken."""
        return self._lost

    async def take(self) -> None:
        """Take the lease, waiting up to ``wait`` s (see the module doc)."""
        try:
            await self._acquire()
        except anyio.get_cancelled_exc_class():
            await self.release()  # the lease may have been committed all the same
            raise

    async def _acquire(self) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            now = time.time()
            try:
                lease = await self._jobs.acquire_lease(self._owner, ttl=self._ttl, now=now)
            except StoreBusyError:
                # Another process held the write lock past busy_timeout (a supervisor
                # frozen mid-transaction, a long write): while we may wait, wait.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                logger.warning("database busy while taking the supervisor lease; retrying")
                await anyio.sleep(min(left, _LEASE_POLL))
                continue
            if not lease.acquired and holder_is_dead(lease.owner):
                lease = await self._take_over(lease.owner, lease.expires_at)
            if lease.acquired:
                self._expires_at = lease.expires_at
                self._lost = False
                return
            left = deadline - time.monotonic()
            if left <= 0:
                until = datetime.fromtimestamp(lease.expires_at, UTC).isoformat(timespec="seconds")
                raise SupervisorLeaseError(
                    f"another supervisor ({lease.owner}) holds this database's lease until "
                    f"{until} ({max(0.0, lease.expires_at - now):.0f} s from now, unless it "
                    "renews it); stop it first, or pass lease_wait= "
                    "(asemantic supervise --lease-wait) to wait for it"
                )
            await anyio.sleep(min(left, _LEASE_POLL))

    async def _take_over(self, holder: str, expires_at: float) -> Lease:
        """Take the lease of a dead holder now (see the module doc)."""
        logger.warning(
            "the supervisor holding this database's lease is gone (%s); taking it over", holder
        )
        now = time.time()
        as_of = max(now, expires_at + _TAKEOVER_MARGIN)
        ttl = max(_TAKEOVER_MARGIN, self._ttl - (as_of - now))
        return await self._jobs.acquire_lease(self._owner, ttl=ttl, now=as_of)

    async def renew(self) -> bool:
        """Renew the lease; False (and ``on_lost`` is called) if another supervisor has it."""
        lease = await self._jobs.acquire_lease(self._owner, ttl=self._ttl, now=time.time())
        if lease.acquired:
            self._expires_at = lease.expires_at
            return True
        self._lose(lease.owner)
        return False

    def _lose(self, holder: str) -> None:
        logger.error("supervisor lease taken over by another supervisor; stopping")
        self._expires_at = 0.0
        self._lost = True
        self._on_lost(f"the supervisor lease was taken over by {holder}; stopped")

    async def keep(self, stop: anyio.Event) -> None:
        """The keeper task: renew every third of ``ttl`` until ``stop`` or a lost lease."""
        interval = self._ttl / 3
        while not stop.is_set():
            with anyio.move_on_after(interval):
                await stop.wait()
            if stop.is_set():
                return
            try:
                if not await self.renew():
                    return
            except Exception:  # noqa: BLE001 - retried; the loop also checks the lease
                logger.warning("supervisor lease renewal failed; retrying")

    async def ensure(self) -> bool:
        """Renew now if more than half of the lease's time is gone (see the module doc)."""
        if self._expires_at - time.time() > self._ttl / 2:
            return True
        return await self.renew()

    async def before_create(self) -> bool:
        """The manager's ``before_create``: is the lease still ours (see the module doc)?"""
        if time.time() >= self._expires_at:
            # Run out by our own clock (frozen mid-pass?): another supervisor may have
            # taken it and submitted this plan. Renewing tells whether we stop.
            logger.warning("supervisor lease ran out during a pass; no more creates in it")
            await self.renew()
            return False
        return await self.ensure()

    async def release(self) -> None:
        """Release the lease, shielded from cancellation and bounded (see the module doc)."""
        with anyio.move_on_after(_RELEASE_TIMEOUT, shield=True):
            try:
                await self._jobs.release_lease(self._owner)
            except Exception:  # noqa: BLE001 - stopping anyway; the lease expires
                logger.warning("could not release the supervisor lease; it will expire")
        self._expires_at = 0.0
