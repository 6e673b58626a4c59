"""Many tasks on one store, two stores on one file, and cancellation at every await."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.adapters.sqlite.connection import select_driver
from asemantic.domain.documents import Document
from asemantic.errors import StoreBusyError, StoreError
from asemantic.ports import SearchFilters
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, vector_ids

TOPICS = ["rain clouds", "mountain trail", "ocean tide", "desert sand", "forest moss"]


def _texts(n: int, words: str) -> list[str]:
    return [f"{words} note {i} with some more words" for i in range(n)]


async def test_many_tasks_write_and_search_at_once(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    async def writer(i: int) -> None:
        topic = TOPICS[i % len(TOPICS)]
        await store.write_document(
            make_write(
                f"doc-{i}",
                _texts(8, topic),
                embedder=embedder,
                ready=range(0, 8, 2),
                metadata={"topic": topic},
            )
        )

    async def searcher(i: int) -> None:
        topic = TOPICS[i % len(TOPICS)]
        hits = await store.search(embedder.vector(topic), k=5)
        assert all(h.distance is not None and h.distance >= -1e-6 for h in hits)
        await store.search(
            embedder.vector(topic), k=3, filters=SearchFilters(metadata={"topic": topic})
        )

    async def updater() -> None:
        for _ in range(10):
            counts = await store.count_chunks_by_status()
            if counts["PENDING"]:
                snapshot = await store.get_document("doc-0")
                if snapshot is not None:
                    await store.bulk_update_vectors(
                        {c.chunk_id: embedder.vector(str(c.chunk_id)) for c in snapshot.chunks}
                    )
            await asyncio.sleep(0)

    jobs: list[Awaitable[Any]] = [writer(i) for i in range(40)]
    jobs += [searcher(i) for i in range(40)]
    jobs += [updater() for _ in range(3)]
    await asyncio.gather(*jobs)
    counts = await store.count_chunks_by_status()
    assert sum(counts.values()) == 40 * 8
    assert len(vector_ids(db_path)) == counts["READY"]
    assert await store.integrity_check() == "ok"
    for topic in TOPICS:
        hits = await store.search(embedder.vector(topic), k=4)
        assert all(topic in h.text for h in hits)


async def test_two_stores_on_one_file(db_path: Path, embedder: LexicalEmbedder) -> None:
    """Like two processes: busy_timeout + BEGIN IMMEDIATE, never 'database is locked'."""
    first = await SqliteStore.open(db_path, space=embedder.space)
    second = await SqliteStore.open(db_path, space=embedder.space)
    try:

        async def write(store: SqliteStore, name: str) -> None:
            for i in range(15):
                await store.write_document(
                    make_write(f"{name}-{i}", _texts(20, name), embedder=embedder)
                )
                await store.search(embedder.vector(name), k=3)

        await asyncio.gather(write(first, "one"), write(second, "two"), write(first, "three"))
        assert sum((await second.count_chunks_by_status()).values()) == 3 * 15 * 20
        assert await first.integrity_check() == "ok"
    finally:
        await first.aclose()
        await second.aclose()


# --- cancellation ---------------------------------------------------------------------


class CancelAt:
    """Cancel the calling task right after its n-th statement has been queued.

    The statement still runs on the connection's thread, as with a real cancellation
    that arrives while a query is in flight. With ``again_on_rollback`` the task is
    cancelled a second time while it waits for its ROLLBACK.
    """

    def __init__(self, store: SqliteStore, n: int, *, again_on_rollback: bool = False) -> None:
        self.n = n
        self.seen = 0
        self.fired = False
        self.armed = True
        self.again_on_rollback = again_on_rollback
        conn = store._writer
        for name in ("execute", "executemany", "execute_fetchall"):
            setattr(conn, name, self._wrap(getattr(conn, name)))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(sql: str, *args: Any) -> Any:
            pending = method(sql, *args)
            if not self.armed:
                return await pending
            if sql == "ROLLBACK":
                if self.again_on_rollback and self.fired:
                    self.again_on_rollback = False
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                return await pending
            self.seen += 1
            if self.seen == self.n:
                self.fired = True
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
            return await pending

        return call


async def _cancel_everywhere(
    make_store: Callable[[], Awaitable[SqliteStore]],
    action: Callable[[SqliteStore, int], Coroutine[Any, Any, object]],
    check: Callable[[SqliteStore, int, bool], Awaitable[None]],
    *,
    again_on_rollback: bool = False,
) -> int:
    """Run ``action`` cancelled at its 1st, 2nd, ... statement until it completes."""
    n = 0
    while True:
        n += 1
        store = await make_store()
        try:
            spy = CancelAt(store, n, again_on_rollback=again_on_rollback)
            task = asyncio.create_task(action(store, n))
            try:
                await task
            except asyncio.CancelledError:
                assert spy.fired
            spy.armed = False
            await check(store, n, spy.fired)
        finally:
            await store.aclose()
        if not spy.fired:
            return n


@pytest.mark.parametrize("again_on_rollback", [False, True], ids=["once", "twice"])
async def test_cancelled_write_document_leaves_nothing_open(
    db_path: Path, embedder: LexicalEmbedder, again_on_rollback: bool
) -> None:
    base = make_write("doc", _texts(30, "harbour boats"), embedder=embedder, ready=range(10))
    changed = make_write("doc", _texts(20, "harbour ships"), embedder=embedder, ready=range(5))

    async def make_store() -> SqliteStore:
        store = await SqliteStore.open(db_path, space=embedder.space)
        await store.write_document(base)
        return store

    async def action(store: SqliteStore, n: int) -> object:
        return await store.write_document(changed)

    async def check(store: SqliteStore, n: int, cancelled: bool) -> None:
        assert not store._lock.locked()
        # The next transaction starts clean, whatever the cancelled one left queued.
        await store.write_document(make_write(f"probe-{n}", ["probe text"]))
        assert not store._writer.in_transaction
        snapshot = await store.get_document("doc")
        assert snapshot is not None
        hashes = [c.content_hash for c in snapshot.chunks]
        old = [d.content_hash for d in base.drafts]
        new = [d.content_hash for d in changed.drafts]
        assert hashes in (old, new)  # all or nothing
        if hashes == new:
            await store.write_document(base)  # reset for the next round
        assert await store.integrity_check() == "ok"

    rounds = await _cancel_everywhere(
        make_store, action, check, again_on_rollback=again_on_rollback
    )
    assert rounds > 4  # BEGIN, upsert, read, delete, update, insert, vectors, COMMIT


async def test_cancelled_bulk_update_leaves_nothing_open(
    db_path: Path, embedder: LexicalEmbedder
) -> None:
    write = make_write("doc", _texts(25, "lantern light"))

    async def make_store() -> SqliteStore:
        store = await SqliteStore.open(db_path, space=embedder.space)
        await store.delete_document("doc")
        await store.write_document(write)
        return store

    async def action(store: SqliteStore, n: int) -> object:
        snapshot = await store.get_document("doc")
        assert snapshot is not None
        mapping = {c.chunk_id: embedder.vector(str(c.chunk_id)) for c in snapshot.chunks}
        return await store.bulk_update_vectors(mapping)

    async def check(store: SqliteStore, n: int, cancelled: bool) -> None:
        assert not store._lock.locked()
        counts = await store.count_chunks_by_status()
        assert counts in (
            {"READY": 0, "PENDING": 25, "FAILED": 0},
            {"READY": 25, "PENDING": 0, "FAILED": 0},
        )
        assert await store.integrity_check() == "ok"
        assert not cancelled or not store._writer.in_transaction

    assert await _cancel_everywhere(make_store, action, check) > 3


async def test_cancelled_outer_transaction(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("doc", _texts(5, "quiet library")))
    entered = asyncio.Event()

    async def slow_apply() -> None:
        async with store.transaction() as conn:
            await store.apply_vectors(conn, {1: embedder.vector("a")})
            entered.set()
            await asyncio.Event().wait()  # never set: cancelled here

    task = asyncio.create_task(slow_apply())
    await entered.wait()
    waiting = asyncio.create_task(store.write_document(make_write("other", ["x"])))
    await asyncio.sleep(0)
    assert not waiting.done()  # the lock keeps it out of the open transaction
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await waiting
    assert vector_ids(db_path) == []
    assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 6, "FAILED": 0}


async def test_close_waits_for_the_write_in_progress(
    db_path: Path, embedder: LexicalEmbedder
) -> None:
    store = await SqliteStore.open(db_path, space=embedder.space)
    write = make_write("doc", _texts(50, "candle wax"), embedder=embedder)
    task = asyncio.create_task(
        store.write_document(replace(write, document=Document(text="x", source="doc")))
    )
    await asyncio.sleep(0)
    await store.aclose()
    outcome = await task
    assert outcome.stored == 50
    async with await SqliteStore.open(db_path) as again:
        snapshot = await again.get_document("doc")
        assert snapshot is not None
        assert len(snapshot.chunks) == 50


async def test_a_lock_held_past_busy_timeout_is_a_store_busy_error(
    db_path: Path, embedder: LexicalEmbedder
) -> None:
    """Another process holding the write lock longer than ``busy_timeout``: the write
    fails with :class:`StoreBusyError` (a :class:`StoreError`), writes nothing, and the
    same write succeeds once the lock is released."""
    store = await SqliteStore.open(db_path, space=embedder.space, busy_timeout_ms=50)
    holder = select_driver().module.connect(str(db_path), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        write = make_write("held.md", _texts(3, "rain clouds"), embedder=embedder)
        with pytest.raises(StoreBusyError, match="write lock") as caught:
            await store.write_document(write)
        assert isinstance(caught.value, StoreError)
        holder.execute("ROLLBACK")
        assert await store.fetchall("SELECT COUNT(*) FROM documents") == [(0,)]
        await store.write_document(write)
        assert await store.fetchall("SELECT COUNT(*) FROM documents") == [(1,)]
    finally:
        holder.close()
        await store.aclose()
