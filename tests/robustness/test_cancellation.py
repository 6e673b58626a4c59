"""Cancellation at every await of the write path leaves the file consistent and unlocked.

Each operation (sync and async ingestion, ``flush_queue``, ``sync_status``) is run again
and again, cancelled at its 1st, 2nd, 3rd ... await point, until it completes without
reaching the next one. The await points counted are every statement on the store's
two connections and every HTTP exchange with the emulator, twice: before the request
leaves (nothing happened remotely) and after its answer came back (the remote change
happened, the caller never learns of it). After each cancelled run:

* the cancellation reached the caller (it was not swallowed nor turned into another
  error), the store's write lock is free and the writer has no transaction open;
* another connection can take the write lock at once, and a new write succeeds;
* the integrity check passes (SQLite, foreign keys, exactly one vector per READY
  chunk), no PENDING chunk sits in a finished job, a re-ingested document is entirely
  the old or the new version.

When every operation has been cancelled everywhere, the batch pipeline is driven to the
end: every chunk READY, every job created remotely exactly once, nothing left remotely.
A last test cancels with ``asyncio.timeout`` of growing tiny delays instead, so the
cancellation also lands between the counted points.

SQLite only: the cancellations land at each statement on the SQLite adapter's
connections (its writer and reader), and the checks look at its lock and its file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from asemantic import GeminiSettings, SemanticCore
from asemantic.adapters.sqlite.connection import select_driver
from tests.robustness.conftest import (
    OpenCore,
    RevocableEmulator,
    batch_texts_applied,
    check_contracts,
    corpus,
    drain,
    fast_retry,
    successful_creates,
)
from tests.support import sqlite_of, sqlite_only

pytestmark = sqlite_only("cancels at each statement on the SQLite adapter's connections")


@dataclass
class Points:
    """Counts await points; at the ``n``-th one, cancels ``target``."""

    n: int = 0
    seen: int = 0
    fired: bool = False
    target: asyncio.Task[Any] | None = None
    kinds: list[str] = field(default_factory=list)

    def arm(self, n: int, target: asyncio.Task[Any]) -> None:
        self.n, self.seen, self.fired, self.target = n, 0, False, target

    def disarm(self) -> None:
        self.target = None

    def hit(self, kind: str) -> bool:
        """Count a point; True if the target was just cancelled here."""
        if self.target is None or self.fired:
            return False
        self.seen += 1
        if self.seen != self.n:
            return False
        self.fired = True
        self.kinds.append(kind)
        self.target.cancel()
        return True


class CountingTransport(httpx2.AsyncBaseTransport):
    """Wraps the emulator's transport with a point before and after each exchange."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, points: Points) -> None:
        self._inner = inner
        self._points = points

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._points.hit("http before"):
            await asyncio.sleep(0)
        response = await self._inner.handle_async_request(request)
        if self._points.hit("http after"):
            await asyncio.sleep(0)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _count_statements(core: SemanticCore, points: Points) -> None:
    """Make every statement on the store's connections an await point.

    The statement is queued on the connection's thread before the cancellation is
    delivered, as with a real cancellation arriving while a query is in flight.
    """
    store = sqlite_of(core)
    for role, conn, names in (
        ("writer", store._writer, ("execute", "executemany", "execute_fetchall")),
        ("reader", store._reader, ("execute_fetchall",)),
    ):
        for name in names:
            setattr(conn, name, _wrapped(getattr(conn, name), f"{role} {name}", points))


def _wrapped(method: Callable[..., Any], kind: str, points: Points) -> Callable[..., Any]:
    async def call(sql: str, *args: Any) -> Any:
        pending = method(sql, *args)
        if sql != "ROLLBACK":
            points.hit(kind)
        return await pending

    return call


@pytest.fixture
def points() -> Points:
    return Points()


@pytest.fixture
async def core(open_core: OpenCore, emulator: RevocableEmulator, points: Points) -> SemanticCore:
    opened = await open_core(
        gemini=GeminiSettings(
            base_url=emulator.base_url,
            transport=CountingTransport(emulator.async_transport(), points),
            retry=fast_retry(),
        )
    )
    _count_statements(opened, points)
    return opened


def _versioned(version: int, *, paragraphs: int = 6) -> str:
    """A multi-chunk document in which every paragraph names its version."""
    body = "\n\n".join(
        f"## Part {p}\n\n" + " ".join(f"marker{version} topic{p} word{w}" for w in range(60))
        for p in range(paragraphs)
    )
    return f"# Versioned\n\n{body}\n"


async def _versions_of(core: SemanticCore, source: str) -> set[str]:
    rows = await sqlite_of(core).fetchall(
        "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source = ?",
        (source,),
    )
    return {word for (text,) in rows for word in str(text).split() if word.startswith("marker")}


async def _check_after(core: SemanticCore, path: Path) -> None:
    store = sqlite_of(core)
    assert not store._lock.locked()
    assert not store._writer.in_transaction
    # Another connection takes the write lock at once: nothing is left locked.
    other = select_driver().module.connect(str(path), timeout=0.5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    with anyio.fail_after(5):
        await core.delete_document("no-such-document")  # a write transaction
    await check_contracts(core)


Operation = Callable[[SemanticCore, int], Coroutine[Any, Any, object]]
Setup = Callable[[SemanticCore, RevocableEmulator, int], Awaitable[None]]


async def _no_setup(core: SemanticCore, emulator: RevocableEmulator, n: int) -> None:
    return None


async def _queue_some(core: SemanticCore, emulator: RevocableEmulator, n: int) -> None:
    await drain(core, emulator)  # what earlier rounds left, so every round does as much
    for source, text in corpus(2, start=2 * n, prefix="queued"):
        await core.ingest(text, source=source, mode="async")


async def _jobs_to_apply(core: SemanticCore, emulator: RevocableEmulator, n: int) -> None:
    await _queue_some(core, emulator, n)
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()


async def _ingest_sync(core: SemanticCore, n: int) -> object:
    return await core.ingest(_versioned(n), source="versioned", mode="sync")


async def _ingest_async(core: SemanticCore, n: int) -> object:
    return await core.ingest(_versioned(n), source="versioned", mode="async")


async def _flush(core: SemanticCore, n: int) -> object:
    return await core.batch_manager.flush_queue(min_size=1)


async def _sync_status(core: SemanticCore, n: int) -> object:
    return await core.batch_manager.sync_status()


OPERATIONS: dict[str, tuple[Setup, Operation]] = {
    "ingest-sync": (_no_setup, _ingest_sync),
    "ingest-async": (_no_setup, _ingest_async),
    "flush_queue": (_queue_some, _flush),
    "sync_status": (_jobs_to_apply, _sync_status),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
async def test_cancelled_at_every_await_point(
    core: SemanticCore,
    emulator: RevocableEmulator,
    points: Points,
    db_path: Path,
    name: str,
) -> None:
    setup, operation = OPERATIONS[name]
    await core.ingest(_versioned(0), source="versioned", mode="sync")
    n = 0
    while True:
        n += 1
        assert n < 200, "the operation never completed"
        await setup(core, emulator, n)
        task = asyncio.create_task(operation(core, n))
        points.arm(n, task)
        try:
            await task
        except asyncio.CancelledError:
            assert points.fired, "cancelled by nobody"
        finally:
            points.disarm()
        if points.fired:
            # The cancellation reached the caller: not swallowed, not turned into another error.
            assert task.cancelled()
        await _check_after(core, db_path)
        versions = await _versions_of(core, "versioned")
        assert len(versions) == 1, versions  # all of one version, never a mix
        if not points.fired:
            break
    rounds = n - 1
    assert rounds >= 3, points.kinds
    kinds = {kind.split()[0] for kind in points.kinds}
    if name != "ingest-async":
        assert "http" in kinds
    assert "writer" in kinds

    # Whatever the cancellations left, the pipeline finishes it: nothing lost or doubled.
    await drain(core, emulator)
    counts = await core.store.count_chunks_by_status()
    assert counts["PENDING"] == counts["FAILED"] == 0
    jobs = await core.batch_jobs.jobs()
    assert successful_creates(emulator) == len(jobs)
    queued = await sqlite_of(core).fetchall(
        "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE d.source LIKE 'queued-%'"
    )
    if name in ("flush_queue", "sync_status"):
        assert await batch_texts_applied(core) >= int(queued[0][0])
    await check_contracts(core, emulator)


@pytest.mark.parametrize("name", ["ingest-sync", "sync_status"])
async def test_cancelled_by_timeouts_of_growing_tiny_delays(
    core: SemanticCore, emulator: RevocableEmulator, db_path: Path, name: str
) -> None:
    setup, operation = OPERATIONS[name]
    await core.ingest(_versioned(0), source="versioned", mode="sync")
    delay = 0.0
    outcomes = {"timed out": 0, "completed": 0}
    for n in range(1, 31):
        await setup(core, emulator, n)
        try:
            async with asyncio.timeout(delay):
                await operation(core, n)
            outcomes["completed"] += 1
        except TimeoutError:
            outcomes["timed out"] += 1
        await _check_after(core, db_path)
        assert len(await _versions_of(core, "versioned")) == 1
        delay = delay * 1.4 if delay else 0.0002
    assert outcomes["timed out"] >= 5
    await drain(core, emulator)
    assert successful_creates(emulator) == len(await core.batch_jobs.jobs())
    await check_contracts(core, emulator)
