"""A supervisor whose lease holder died on this host takes the lease over at once.

The holders are real processes (a child that is killed, reaped or left a zombie); the
lease is the real row in a real SQLite file.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from asemantic import SemanticCore
from asemantic.batch.holders import holder_is_dead, owner_id, parse_owner, process_start
from asemantic.batch.lease import SupervisorLease
from asemantic.batch.supervisor import BatchSupervisor
from asemantic.errors import SupervisorLeaseError
from tests.supervisor.conftest import OpenCore, fast, lease_row

HOST = socket.gethostname()


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def owner_of(pid: int, start: int | None = None) -> str:
    found = process_start(pid) if start is None else start
    return f"{HOST}:{pid}:{found or 0}:0badc0de"


async def write_lease(core: SemanticCore, owner: str, *, expires_in: float = 60.0) -> None:
    await core.batch_jobs.acquire_lease(owner, ttl=expires_in, now=time.time())


def test_owner_ids_name_this_process() -> None:
    holder = parse_owner(owner_id())
    assert holder is not None
    assert holder.host == HOST
    assert holder.start == (process_start(holder.pid) or 0)
    assert not holder_is_dead(owner_id())  # this process is alive


def test_liveness_of_live_dead_reused_and_foreign_holders(
    child: subprocess.Popen[bytes],
) -> None:
    live = owner_of(child.pid)
    assert not holder_is_dead(live)
    assert holder_is_dead(owner_of(child.pid, start=1))  # the pid was reused by another
    assert not holder_is_dead(f"elsewhere:{child.pid}:1:0badc0de")  # another host
    assert not holder_is_dead("worker-a:1234")  # not named by owner_id: unknown
    child.kill()
    deadline = time.monotonic() + 10
    while not holder_is_dead(live):  # a zombie until reaped: dead all the same
        assert time.monotonic() < deadline, "the killed child never looked dead"
        time.sleep(0.01)
    child.wait()
    assert holder_is_dead(live)  # reaped: no such process


async def test_the_lease_of_a_killed_holder_is_taken_over_at_once(
    open_core: OpenCore, child: subprocess.Popen[bytes]
) -> None:
    core = await open_core()
    dead = owner_of(child.pid)
    await write_lease(core, dead, expires_in=60)
    child.kill()
    child.wait()
    async with BatchSupervisor(core, fast(lease_wait=0, lease_ttl=60), owner="fresh") as sup:
        row = await lease_row(core)
        assert row is not None and row[0] == "fresh"
        assert time.time() + 55 < row[1] <= time.time() + 61  # a full ttl from now
        assert sup.health.running
    assert await lease_row(core) is None


async def test_a_live_holder_on_this_host_is_still_waited_for(
    open_core: OpenCore, child: subprocess.Popen[bytes]
) -> None:
    core = await open_core()
    await write_lease(core, owner_of(child.pid), expires_in=60)
    with pytest.raises(SupervisorLeaseError, match="lease_wait"):
        async with BatchSupervisor(core, fast(lease_wait=0.3), owner="impatient"):
            pass
    row = await lease_row(core)
    assert row is not None and row[0] == owner_of(child.pid)


async def test_a_take_over_loses_to_a_supervisor_that_took_the_lease_first(
    open_core: OpenCore, child: subprocess.Popen[bytes]
) -> None:
    """Two restarted supervisors saw the same dead holder: only one gets the lease."""
    core = await open_core()
    dead = owner_of(child.pid)
    await write_lease(core, dead, expires_in=60)
    row = await lease_row(core)
    assert row is not None
    child.kill()
    child.wait()

    def lease(owner: str) -> SupervisorLease:
        return SupervisorLease(core.batch_jobs, owner=owner, ttl=60, wait=0, on_lost=print)

    first = await lease("first")._take_over(dead, row[1])
    second = await lease("second")._take_over(dead, row[1])  # saw the same dead row
    assert first.acquired and not second.acquired
    assert second.owner == "first"
    assert (await lease_row(core) or ("",))[0] == "first"
