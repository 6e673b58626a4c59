"""The supervisor lease on PostgreSQL: a session advisory lock, with the lease row beside it.

Several ``asemantic supervise`` processes (one per host, say) may run against one
database. One of them is **active**; the others are **standby**: they wait in
``lease_wait`` and one of them takes over within seconds of the active one's death.

Decisions:

* **Active/standby, not shared work.** Sharing jobs between supervisors (claiming each
  job with ``FOR UPDATE SKIP LOCKED``) buys no throughput here: a supervisor spends its
  time waiting for Google (a batch job takes minutes to hours), one process polls
  hundreds of jobs concurrently, and the remote create is the one call that is not
  idempotent (contract 3). With one active supervisor every create, adoption and cleanup
  has one author, the reconcile logic stays the one SQLite uses, and a dead host costs
  seconds, not a job. Every write the supervisor makes is still safe when two run at
  once (compare-and-set transitions, idempotent result slices, ``SKIP LOCKED`` job
  creation), so a stale holder can do no harm beyond a wasted poll.
* **Exclusivity is a session-level advisory lock**, ``pg_try_advisory_lock(key)``, held
  on a dedicated connection (one per owner) for as long as the owner holds the lease. The
  key is derived from the database's ``database_id`` (:func:`lease_key`), distinct from
  the schema lock. The server drops the lock the moment the holder's backend ends: a
  ``kill -9`` closes the socket and frees the lock at once; a dead host is noticed by
  the server's TCP keepalives, set on that connection to a few seconds
  (:data:`KEEPALIVE_SETTINGS`; they do not apply to Unix sockets, where the peer
  is on the same host and a death is seen at once). A standby trying the lock every
  ``_LEASE_POLL`` (0.2 s) then takes over.
* **The row is for visibility and for frozen holders.** ``supervisor_lease(owner,
  expires_at)`` is written by the holder on every take and renewal (epoch seconds of
  the caller's clock, as the port's :class:`~asemantic.ports.Lease` and SQLite's), so
  ``JobStore.current_lease()`` (and anyone reading the table) sees who holds the
  database until when. A holder that is frozen (``SIGSTOP``, a suspended VM) keeps its
  TCP session alive and the lock with it; once its row has expired by a standby's
  clock, the standby ends the frozen holder's lock session with
  ``pg_terminate_backend`` and takes the lock (the frozen process's pool sessions end
  any open transaction after the store's idle-in-transaction timeout): the same
  take-over after ``lease_ttl`` that SQLite gives. (Hosts' clocks must agree to well
  within ``lease_ttl``; a role that may not terminate the holder's backend waits
  instead.)
* **Renewal checks the lock on the server** (``pg_locks`` of this backend), with a
  timeout, so a holder whose lock session died (a server restart, a cut connection)
  learns it on its next renewal: the lock is taken again if it is free, and otherwise
  the renewal answers "not acquired", which makes :class:`~asemantic.batch.lease.SupervisorLease`
  stop the supervisor.
* **The remote create is fenced** (:meth:`LeaseSessions.fence`): a job store that
  holds a lease records a create attempt only while the server confirms, in the same
  transaction, that one of its lock sessions still holds the lock and the row still names
  its owner. A holder that lost its lock, and has not noticed yet, sends no create.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from asemantic.ports import Lease

__all__ = [
    "FENCE",
    "KEEPALIVE_SETTINGS",
    "LeaseSessions",
    "SESSION_ERRORS",
    "SESSION_PREFIX",
    "lease_key",
]

logger = logging.getLogger(__name__)

KEEPALIVE_SETTINGS: Mapping[str, str] = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
"""Server-side settings of a lock session: a silent peer is dropped after about 11 s."""
CHECK_TIMEOUT = 5.0
"""Seconds a renewal's look at its lock session may take before the session counts as dead."""
TERMINATE_WAIT = 5.0
"""Seconds taking over from a frozen holder waits for its ended lock session to let go."""
SESSION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a session ended by the server while idle, on next use
    OSError,  # TimeoutError included
)
"""What using a lock session that died may raise."""
_UNNAMED = "another supervisor"
"""The holder named when the lock is held but the row does not (yet) say by whom."""

_HOLDER_PIDS = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = $1::bigint::oid AND objid = $2::bigint::oid"
)
_HOLDS = f"SELECT pg_backend_pid() IN ({_HOLDER_PIDS})"
_HOLDER_NAME = (
    f"SELECT application_name FROM pg_stat_activity WHERE pid IN ({_HOLDER_PIDS}) LIMIT 1"
)
SESSION_PREFIX = "asemantic lease "
"""A lock session's ``application_name``: this, then the owner (cut at 63 bytes)."""
_ROW = "SELECT owner, expires_at FROM supervisor_lease WHERE id = 1"
_UPSERT = (
    "INSERT INTO supervisor_lease (id, owner, expires_at) VALUES (1, $1, $2) "
    "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
)
FENCE = (
    f"SELECT EXISTS ({_HOLDER_PIDS} AND pid = ANY($3::int[])) AND EXISTS "
    "(SELECT 1 FROM supervisor_lease WHERE id = 1 AND owner = ANY($4::text[]))"
)
"""True while one of the pids ($3) holds the lock and the row names one of the owners ($4)."""


def lease_key(database_id: str) -> int:
    """The advisory lock key of a database's supervisor lease (a non-negative bigint)."""
    digest = hashlib.sha256(b"asemantic supervisor lease\0" + database_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def _split_key(key: int) -> tuple[int, int]:
    """``key`` as pg_locks shows a bigint advisory key: (classid, objid)."""
    return key >> 32, key & 0xFFFF_FFFF


@dataclass(slots=True)
class _Session:
    """One owner's lock connection; ``holds`` once its backend holds the lock."""

    conn: Any = None
    holds: bool = False
    pid: int | None = None
    acquired: bool = False
    """Whether this owner took the lease through this session (and has not released it)."""

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()


Connect = Callable[[str], Awaitable[Any]]
"""Opens a lock connection, named after the owner (``application_name``)."""


class LeaseSessions:
    """The lock sessions of one job store, by owner (see the module doc).

    ``connect(owner)`` opens a dedicated connection (with :data:`KEEPALIVE_SETTINGS`);
    ``key`` is :func:`lease_key` of the database. Calls for one owner are serialised.
    """

    def __init__(self, connect: Connect, key: int) -> None:
        self._connect = connect
        self._key = key
        self._classid, self._objid = _split_key(key)
        self._sessions: dict[str, _Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        held = sorted(owner for owner, s in self._sessions.items() if s.holds)
        return f"LeaseSessions(held_by={held!r})"

    @property
    def key(self) -> int:
        return self._key

    def _lock(self, owner: str) -> asyncio.Lock:
        return self._locks.setdefault(owner, asyncio.Lock())

    async def acquire(self, owner: str, *, ttl: float, now: float) -> Lease:
        """Take or renew ``owner``'s lease, unless another live (or unexpired) owner has it."""
        async with self._lock(owner):
            session = self._sessions.setdefault(owner, _Session())
            try:
                return await self._acquire(session, owner, ttl=ttl, now=now)
            except SESSION_ERRORS:
                await _close(session)  # the next call starts on a new session
                raise

    async def _acquire(self, session: _Session, owner: str, *, ttl: float, now: float) -> Lease:
        await self._check(session)
        if not session.holds:
            await self._try_lock(session, owner)
        if not session.holds:
            refused = await self._take_from_frozen(session, owner, now)
            if refused is not None:
                return refused
        await session.conn.execute(_UPSERT, owner, now + ttl, timeout=CHECK_TIMEOUT)
        session.acquired = True
        return Lease(owner=owner, expires_at=now + ttl, acquired=True)

    async def _check(self, session: _Session) -> None:
        """Open the session if needed; find out whether a holding one still holds."""
        if session.alive and session.holds:
            try:
                holds = await session.conn.fetchval(_HOLDS, *self._halves, timeout=CHECK_TIMEOUT)
            except SESSION_ERRORS:
                logger.warning("the supervisor lease's lock session failed; reconnecting")
                await _close(session)
                holds = False
            session.holds = bool(holds)
            if session.holds:
                return
        if not session.alive:
            session.holds = False
            session.pid = None

    async def _open(self, session: _Session, owner: str) -> None:
        if not session.alive:
            await _close(session)
            session.conn = await self._connect(owner)
            session.pid = int(session.conn.get_server_pid())
            session.holds = False

    async def _try_lock(self, session: _Session, owner: str) -> None:
        await self._open(session, owner)
        session.holds = bool(
            await session.conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key)
        )

    async def _take_from_frozen(self, session: _Session, owner: str, now: float) -> Lease | None:
        """Another session holds the lock: refuse (a Lease), or end a holder whose row has
        expired and take the lock (None)."""
        row = await session.conn.fetchrow(_ROW)
        holder = str(row["owner"]) if row is not None and row["owner"] is not None else None
        expires_at = float(row["expires_at"] or 0.0) if row is not None else 0.0
        if holder is None or holder == owner:
            # Between another session's lock and its row write (or our own row left from
            # a lock session that died): the holder's session name says who it is.
            name = await session.conn.fetchval(_HOLDER_NAME, *self._halves)
            named = str(name)[len(SESSION_PREFIX) :] if name else ""
            held_by = named if str(name or "").startswith(SESSION_PREFIX) and named else _UNNAMED
            return Lease(owner=held_by, expires_at=now, acquired=False)
        if expires_at > now:
            return Lease(owner=holder, expires_at=expires_at, acquired=False)
        pids = [int(r[0]) for r in await session.conn.fetch(_HOLDER_PIDS, *self._halves)]
        for pid in pids:
            logger.warning("supervisor lease expired but its lock is held; ending the holder")
            try:
                await session.conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            except asyncpg.PostgresError:
                logger.warning("could not end the frozen lease holder; waiting for it instead")
                return Lease(owner=holder, expires_at=expires_at, acquired=False)
        deadline = time.monotonic() + TERMINATE_WAIT
        await self._try_lock(session, owner)
        while not session.holds and pids and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the ended backend releases the lock as it exits
            await self._try_lock(session, owner)
        if session.holds:
            return None
        return Lease(owner=holder, expires_at=expires_at, acquired=False)

    @property
    def _halves(self) -> tuple[int, int]:
        return self._classid, self._objid

    async def release(self, owner: str) -> bool:
        """End ``owner``'s lock session (deleting its row first if it held the lock).

        True if the row was deleted here; False when the caller should delete it
        (``WHERE owner = ...``) itself, as when no session of ``owner`` held the lock.
        """
        async with self._lock(owner):
            session = self._sessions.pop(owner, None)
            if session is None:
                return False
            deleted = False
            try:
                if session.alive and session.holds:
                    await session.conn.execute(
                        "DELETE FROM supervisor_lease WHERE id = 1 AND owner = $1",
                        owner,
                        timeout=CHECK_TIMEOUT,
                    )
                    deleted = True
            finally:
                await _close(session)
            return deleted

    def fence(self) -> tuple[int, int, list[int], list[str]] | None:
        """The arguments of :data:`FENCE` a remote create needs, or None when no owner
        took the lease through these sessions (nothing to fence: a manual flush)."""
        if not any(s.acquired for s in self._sessions.values()):
            return None
        held = [
            (s.pid, owner)
            for owner, s in self._sessions.items()
            if s.acquired and s.holds and s.alive and s.pid is not None
        ]
        pids = [int(pid) for pid, _ in held if pid is not None]
        return self._classid, self._objid, pids, [owner for _, owner in held]

    async def aclose(self) -> None:
        """Close every lock session (the server releases their locks at once)."""
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await _close(session)


async def _close(session: _Session) -> None:
    conn, session.conn = session.conn, None
    session.holds = False
    if conn is None or conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), CHECK_TIMEOUT)
    except SESSION_ERRORS:
        conn.terminate()
