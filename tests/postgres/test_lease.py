"""The PostgreSQL supervisor lease: an advisory lock on a session of its own, with a row.

* Exclusive across stores (processes): a second owner is refused, naming the holder.
* A holder killed with ``kill -9`` frees the lock at once: a standby takes over although
  the dead holder's row says it has a long time left.
* A frozen holder (``SIGSTOP``) keeps its session: it is replaced once its row has
  expired (its lock session is ended), and when it wakes its renewal is refused.
* A holder whose lock session died sends no create (the fence), and learns of the loss
  on its next renewal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from asemantic.adapters.postgres.lease import lease_key
from asemantic.errors import StoreError
from tests.postgres.test_jobs import AT, OpenHost, seed
from tests.postgres.test_jobs import open_hosts as open_hosts  # the fixture

ROOT = Path(__file__).resolve().parents[2]

posix_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGSTOP") or not Path("/proc/self/stat").exists(),
    reason="needs SIGKILL/SIGSTOP and /proc",
)

_HOLDER = """
import asyncio, json, sys, time
from tests.postgres.test_jobs import open_host

async def main(url, owner, ttl):
    host = await open_host(url)
    lease = await host.jobs.acquire_lease(owner, ttl=ttl, now=time.time())
    print(json.dumps({"event": "held", "acquired": lease.acquired}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        lease = await host.jobs.acquire_lease(owner, ttl=ttl, now=time.time())
        print(json.dumps({"event": "renewed", "acquired": lease.acquired,
                          "holder": lease.owner}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


class Holder:
    """A process that takes the lease, then renews it once per line sent to it."""

    def __init__(self, url: str, owner: str, ttl: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, url, owner, str(ttl)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await anyio.to_thread.run_sync(self.proc.stdout.readline)
        assert line, f"the holder exited ({self.proc.poll()})"
        event: dict[str, Any] = json.loads(line)
        return event

    async def renew(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("renew\n")
        self.proc.stdin.flush()
        return await self.event()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()


async def _lock_sessions(host: Any) -> list[tuple[int, str]]:
    """(pid, application_name) of the backends holding this database's lease lock."""
    key = lease_key(await host.jobs.database_id())
    rows = await host.pool.fetch(
        "SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid",
        key >> 32,
        key & 0xFFFF_FFFF,
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def _row(host: Any) -> tuple[str, float] | None:
    row = await host.pool.fetchrow("SELECT owner, expires_at FROM supervisor_lease")
    return None if row is None else (str(row[0]), float(row[1]))


async def test_the_lease_is_exclusive_across_stores(open_hosts: OpenHost) -> None:
    first, second = await open_hosts(), await open_hosts()
    now = time.time()
    taken = await first.jobs.acquire_lease("a", ttl=30, now=now)
    assert (taken.owner, taken.expires_at, taken.acquired) == ("a", now + 30, True)
    refused = await second.jobs.acquire_lease("b", ttl=30, now=now + 1)
    assert (refused.owner, refused.expires_at, refused.acquired) == ("a", now + 30, False)
    assert await _row(second) == ("a", now + 30)
    [(_, name)] = await _lock_sessions(first)
    assert name == "asemantic lease a"
    renewed = await first.jobs.acquire_lease("a", ttl=30, now=now + 2)
    assert (renewed.expires_at, renewed.acquired) == (now + 32, True)
    assert len(await _lock_sessions(first)) == 1  # renewing does not stack locks
    await second.jobs.release_lease("b")  # not the holder: nothing happens
    assert not (await second.jobs.acquire_lease("b", ttl=30, now=now + 3)).acquired
    await first.jobs.release_lease("a")
    assert await _row(first) is None
    assert await _lock_sessions(first) == []
    assert (await second.jobs.acquire_lease("b", ttl=30, now=now + 4)).acquired


async def test_closing_the_store_frees_the_lease_at_once(open_hosts: OpenHost) -> None:
    first, second = await open_hosts(), await open_hosts()
    now = time.time()
    assert (await first.jobs.acquire_lease("a", ttl=600, now=now)).acquired
    await first.aclose()
    taken = await second.jobs.acquire_lease("b", ttl=600, now=now + 1)
    assert taken.acquired  # the row still said "a" for ten minutes: the lock decides
    assert await _row(second) == ("b", now + 601)


@posix_signals
async def test_a_killed_holder_is_replaced_before_its_row_expires(
    open_hosts: OpenHost, postgres_url: str
) -> None:
    standby = await open_hosts()
    holder = Holder(postgres_url, "holder", ttl=600)
    try:
        with anyio.fail_after(30):
            assert (await holder.event())["acquired"]
            refused = await standby.jobs.acquire_lease("standby", ttl=600, now=time.time())
            assert (refused.owner, refused.acquired) == ("holder", False)
            holder.proc.kill()  # SIGKILL: no release, the row stays
            holder.proc.wait()
            while not (  # noqa: ASYNC110 - polling the server, which has no event
                await standby.jobs.acquire_lease("standby", ttl=600, now=time.time())
            ).acquired:
                await anyio.sleep(0.05)
        row = await _row(standby)
        assert row is not None and row[0] == "standby"
    finally:
        holder.stop()


@posix_signals
async def test_a_frozen_holder_is_replaced_once_its_row_expires(
    open_hosts: OpenHost, postgres_url: str
) -> None:
    standby = await open_hosts()
    holder = Holder(postgres_url, "frozen", ttl=1.0)
    try:
        with anyio.fail_after(30):
            assert (await holder.event())["acquired"]
            os.kill(holder.proc.pid, signal.SIGSTOP)
            now = time.time()
            assert not (await standby.jobs.acquire_lease("standby", ttl=30, now=now)).acquired
            # Its session is alive (the kernel answers for a stopped process) ...
            assert len(await _lock_sessions(standby)) == 1
            # ... so it is ended once the row has expired by the standby's clock.
            taken = await standby.jobs.acquire_lease("standby", ttl=30, now=now + 2)
            assert taken.acquired
            [(_, name)] = await _lock_sessions(standby)
            assert name == "asemantic lease standby"
            os.kill(holder.proc.pid, signal.SIGCONT)
            woken = await holder.renew()
            assert (woken["acquired"], woken["holder"]) == (False, "standby")
        assert await _row(standby) == ("standby", now + 32)
    finally:
        holder.stop()


async def test_a_holder_that_lost_its_lock_sends_no_create(open_hosts: OpenHost) -> None:
    first, second = await open_hosts(), await open_hosts()
    [(chunk_id, _)] = await seed(first, 1)
    await first.jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[chunk_id])
    now = time.time()
    assert (await first.jobs.acquire_lease("a", ttl=600, now=now)).acquired
    await first.jobs.mark_create_attempt("j1", AT)  # held: recorded
    await first.jobs.mark_create_attempt("j1", None)
    # The lock session dies (a cut connection, a restarted server) and another takes over.
    [(pid, _)] = await _lock_sessions(first)
    assert await second.pool.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    assert (await second.jobs.acquire_lease("b", ttl=600, now=now + 1)).acquired
    with pytest.raises(StoreError, match="supervisor lease"):
        await first.jobs.mark_create_attempt("j1", AT)
    job = await first.jobs.get_job("j1")
    assert job is not None and job.create_attempted_at is None
    refused = await first.jobs.acquire_lease("a", ttl=600, now=now + 2)
    assert (refused.owner, refused.acquired) == ("b", False)
    # Once b has gone, a takes the lease again and may create again.
    await second.jobs.release_lease("b")
    assert (await first.jobs.acquire_lease("a", ttl=600, now=now + 3)).acquired
    await first.jobs.mark_create_attempt("j1", AT)
    job = await first.jobs.get_job("j1")
    assert job is not None and job.create_attempted_at == AT
    # A store holding no lease (it was released) is not fenced: a manual flush.
    await second.jobs.mark_create_attempt("j1", None)
