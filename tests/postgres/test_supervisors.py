"""Several supervisors and app processes on one PostgreSQL database, as real processes.

* Supervisors are active/standby: one holds the lease, the others wait; one killed with
  ``kill -9`` (right after a submit, right after applying a job's results, or at a random
  moment) is replaced by a standby, which takes over long before the dead one's lease row
  expires (the lock died with the process). At the end every chunk is READY with exactly
  one vector, for its current text; every job was created remotely once and completed
  once (its transition history says so); nothing is left on the remote side.
* App processes ingest (batch and online) and search the same database while a
  supervisor embeds their batch chunks.

Run as ``python -m tests.postgres.test_supervisors supervise|app ...`` this module is the
child process (see :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from asemantic import (
    BatchSupervisor,
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    JobStatus,
    RetryConfig,
    SemanticCore,
    SupervisorConfig,
    SupervisorLeaseError,
    TransitionEvent,
)
from asemantic.adapters.postgres.store import PostgresStore
from asemantic.domain.jobs import JobTrigger, next_status
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidTransitionError
from asemantic.testing.emulator import GeminiEmulator
from tests.support import corpus, eventually, fast_supervisor

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KEY = "pg-sup-default-key-41c2"
BATCH_KEY = "pg-sup-batch-key-9d07"
SPACE = EmbeddingSpace(dimensions=768)
LEASE_TTL = 30.0
"""The workers' lease time-to-live: far longer than any take-over these tests wait for."""

posix_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL") or not Path("/proc/self/stat").exists(),
    reason="needs SIGKILL and /proc",
)


# --- the child processes -------------------------------------------------------------


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields}), flush=True)


async def _open_core(url: str, base_url: str, *, create_grace: float = 1.0) -> SemanticCore:
    return await SemanticCore.open(
        url,
        keys=GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY),
        config=CoreConfig(space=SPACE, create_grace_seconds=create_grace),
        gemini=GeminiSettings(
            base_url=base_url,
            retry=RetryConfig(attempts=3, initial_delay=0.01, max_delay=0.05, timeout=10.0),
        ),
    )


async def _supervise(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    config = SupervisorConfig(
        poll_interval=0.05,
        jitter=0.2,
        min_batch_size=1,
        max_batch_size=args.max_batch_size,
        max_wait=0.0,
        lease_ttl=args.lease_ttl,
        lease_wait=args.lease_wait,
        pause_initial=0.05,
        pause_max=0.2,
        stop_timeout=2.0,
    )
    seen: dict[str, int] = {}
    async with await _open_core(args.url, args.base_url) as core:

        def hook(event: TransitionEvent) -> None:
            to = event.to_status.value
            seen[to] = seen.get(to, 0) + 1
            _emit("transition", job=event.job_id, to=to)
            if args.die_on == to and seen[to] == args.die_after and _first(args.die_token):
                _emit("dying")
                os.kill(os.getpid(), signal.SIGKILL)

        supervisor = BatchSupervisor(core, config, owner=args.owner)
        supervisor.on_transition(hook)
        _emit("waiting")
        try:
            async with supervisor:
                _emit("active")
                while supervisor.health.running and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.05)
        except SupervisorLeaseError as exc:
            _emit("refused", error=str(exc))
            return 3
        _emit("exited", last_error=supervisor.health.last_error)
    return 0


def _first(token: str | None) -> bool:
    """True for the first process to claim ``token`` (a file made exclusively), or
    always without one."""
    if token is None:
        return True
    try:
        os.close(os.open(token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


async def _app(args: argparse.Namespace) -> int:
    """Ingest documents (every third one online), searching after each."""
    hits = 0
    async with await _open_core(args.url, args.base_url) as core:
        for index, (source, text) in enumerate(corpus(args.docs, prefix=args.owner)):
            mode = "sync" if index % 3 == 2 else "async"
            await core.ingest(text, source=source, mode=mode)
            hits += len(await core.search(text.split()[1], k=3))
    _emit("done", docs=args.docs, hits=hits)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["supervise", "app"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--lease-ttl", type=float, default=LEASE_TTL)
    parser.add_argument("--lease-wait", type=float, default=0.0)
    parser.add_argument("--max-batch-size", type=int, default=6)
    parser.add_argument("--die-on", default=None, help="a job status: SIGKILL on reaching it")
    parser.add_argument("--die-after", type=int, default=1)
    parser.add_argument("--die-token", default=None, help="only the first to claim it dies")
    parser.add_argument("--docs", type=int, default=10)
    args = parser.parse_args(argv)
    return asyncio.run(_supervise(args) if args.role == "supervise" else _app(args))


# --- the parent's side -----------------------------------------------------------------


class Worker:
    """A child process of this module and the JSON events it prints."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        name = args[args.index("--owner") + 1]
        self.name = name
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.postgres.test_supervisors", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def names(self) -> list[str]:
        while True:
            try:
                self.events.append(json.loads(self._lines.get_nowait()))
            except queue.Empty:
                return [event["event"] for event in self.events]

    def time_of(self, name: str) -> float:
        """When the child printed event ``name`` (its clock, epoch seconds)."""
        self.names()
        return float(next(e["t"] for e in self.events if e["event"] == name))

    def saw(self, name: str) -> bool:
        return name in self.names()

    async def wait_for(self, name: str, *, within: float = 60.0) -> None:
        with anyio.fail_after(within):
            while not self.saw(name):
                if self.proc.poll() is not None and self._lines.empty() and not self.saw(name):
                    raise AssertionError(
                        f"{self.name} exited ({self.proc.returncode}) before {name!r}: "
                        f"{self.names()} {self.stderr_path.read_text(errors='replace')[-3000:]}"
                    )
                await anyio.sleep(0.02)

    async def wait_exit(self, *, within: float = 30.0) -> int:
        with anyio.fail_after(within):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a process, no event to wait on
                await anyio.sleep(0.02)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


def supervisor(tmp_path: Path, url: str, base_url: str, owner: str, *extra: str) -> Worker:
    return Worker(
        tmp_path, "supervise", "--url", url, "--base-url", base_url, "--owner", owner, *extra
    )


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[GeminiEmulator, str, SemanticCore]]:
    """The emulator over loopback, finishing every remote job at once, and a core of the
    test's own on ``url``."""
    emulator = GeminiEmulator(api_keys=[DEFAULT_KEY, BATCH_KEY])
    async with emulator.serve() as base_url:
        core = await _open_core(url, base_url)
        try:
            async with anyio.create_task_group() as group:

                async def complete() -> None:
                    while True:
                        emulator.complete_all()
                        await anyio.sleep(0.01)

                group.start_soon(complete)
                yield emulator, base_url, core
                group.cancel_scope.cancel()
        finally:
            await core.aclose()


async def fetch(core: SemanticCore, sql: str, *args: object) -> list[Any]:
    store = core.store
    assert isinstance(store, PostgresStore)
    return list(await store.pool.fetch(sql, *args))


async def settled(core: SemanticCore, chunks: int) -> bool:
    counts = await core.store.count_chunks_by_status()
    return counts["READY"] == chunks and not await core.batch_jobs.jobs(uncleaned=True)


async def wait_settled(core: SemanticCore, chunks: int, *, within: float = 90.0) -> None:
    await eventually(lambda: settled(core, chunks), within=within, every=0.1)


def _legal(history: list[tuple[str | None, str]]) -> bool:
    if not history or history[0] != (None, "CREATED"):
        return False
    current = JobStatus.CREATED
    for from_status, to_status in history[1:]:
        if from_status != current.value:
            return False
        target = JobStatus(to_status)
        moves = []
        for trigger in JobTrigger:
            with contextlib.suppress(InvalidTransitionError):
                moves.append(next_status(current, trigger))
        if target not in moves:
            return False
        current = target
    return True


async def check_contracts(core: SemanticCore, emulator: GeminiEmulator, chunks: int) -> None:
    """Everything READY with one vector for its current text, each job created once and
    completed once along a legal path, nothing left remotely."""
    assert await core.store.integrity_check() == "ok"
    assert await core.store.count_chunks_by_status() == {
        "READY": chunks,
        "PENDING": 0,
        "FAILED": 0,
    }
    rows = await fetch(
        core,
        "SELECT c.id, COALESCE(c.meta_json::jsonb ->> '_vector_source', c.text), d.title, "
        "v.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
        "LEFT JOIN chunk_vectors v ON v.chunk_id = c.id",
    )
    assert len(rows) == chunks
    assert len(await fetch(core, "SELECT chunk_id FROM chunk_vectors")) == chunks
    for chunk_id, source, title, blob in rows:
        assert blob is not None, f"READY chunk {chunk_id} has no vector"
        got = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float64)
        want = np.asarray(
            emulator.embed(source, dimensions=768, task_type=SPACE.task_type, title=title),
            dtype=np.float64,
        )
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cosine > 1 - 1e-5, f"chunk {chunk_id}: not the vector of its current text"
    jobs = await core.batch_jobs.jobs()
    assert jobs and all(job.status is JobStatus.COMPLETED and job.cleaned for job in jobs)
    histories: dict[str, list[tuple[str | None, str]]] = {}
    for job_id, from_status, to_status in await fetch(
        core, "SELECT job_id, from_status, to_status FROM batch_job_transitions ORDER BY id"
    ):
        histories.setdefault(str(job_id), []).append((from_status, str(to_status)))
    for job in jobs:
        steps = histories[job.job_id]
        assert _legal(steps), f"job {job.job_id}: {steps}"
        assert [s for s in steps if s[1] == "COMPLETED"] == [(steps[-2][1], "COMPLETED")]
    creates = [r for r in emulator.requests_to("batches.create") if r.status == 200]
    assert len(creates) == len(jobs) == len({job.remote_name for job in jobs})
    leftovers = emulator.remote_leftovers()
    assert not leftovers, f"remote leftovers: {leftovers}"


async def batch_texts(core: SemanticCore) -> int:
    rows = await fetch(
        core, "SELECT COALESCE(SUM(texts), 0) FROM usage_ledger WHERE route = 'batch'"
    )
    return int(rows[0][0])


async def lease_owner(core: SemanticCore) -> str | None:
    rows = await fetch(core, "SELECT owner FROM supervisor_lease")
    return str(rows[0][0]) if rows else None


# --- the tests -----------------------------------------------------------------------


@posix_signals
async def test_standbys_take_over_from_supervisors_killed_mid_run(
    tmp_path: Path, postgres_url: str
) -> None:
    async with serving(postgres_url) as (emulator, base_url, core):
        token = str(tmp_path / "one-dies-on-completed")
        wait = ["--lease-wait", "120", "--die-on", "COMPLETED", "--die-token", token]
        a = supervisor(tmp_path, postgres_url, base_url, "worker-A", "--die-on", "SUBMITTED")
        workers = [a]
        try:
            await a.wait_for("active")
            b = supervisor(tmp_path, postgres_url, base_url, "worker-B", *wait)
            c = supervisor(tmp_path, postgres_url, base_url, "worker-C", *wait)
            workers += [b, c]
            await b.wait_for("waiting")
            await c.wait_for("waiting")
            for source, text in corpus(36):  # work for A, now that B and C wait
                await core.ingest(text, source=source, mode="async")
            # A is killed right after its first submit (jobs it planned in the same pass
            # stay CREATED, unsent). B or C takes over, and dies right after applying
            # its first job's results, before deleting that job's remote files.
            await a.wait_for("dying")
            await _wait_any_active([b, c])
            assert await a.wait_exit() == -signal.SIGKILL
            second, third = (b, c) if b.saw("active") else (c, b)
            takeover = second.time_of("active") - a.time_of("dying")
            assert not third.saw("active")
            print(f"take-over after kill -9: {takeover:.2f} s (lease_ttl {LEASE_TTL:.0f} s)")
            await second.wait_for("dying")  # right after applying its first job
            assert await second.wait_exit() == -signal.SIGKILL
            await third.wait_for("active")
            await wait_settled(core, 36)
            assert await lease_owner(core) == third.name
            # A supervisor that does not wait is refused, naming the active one.
            with pytest.raises(SupervisorLeaseError, match=third.name):
                async with BatchSupervisor(core, fast_supervisor(lease_wait=0), owner="p"):
                    pass
            third.proc.send_signal(signal.SIGTERM)
            assert await third.wait_exit() == 0
            assert await lease_owner(core) is None
            await check_contracts(core, emulator, 36)
            assert await batch_texts(core) == 36
        finally:
            for worker in workers:
                worker.kill()


async def _wait_any_active(workers: list[Worker], *, within: float = LEASE_TTL / 2) -> None:
    """Until one of ``workers`` is active: well before a dead holder's row expires."""
    await eventually(lambda: any(w.saw("active") for w in workers), within=within, every=0.02)


@posix_signals
async def test_supervisors_killed_at_random_moments_lose_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    """Kill -9 the active supervisor at random moments of its run, three times; a fresh
    standby is always waiting."""
    rng = random.Random(1234)
    async with serving(postgres_url) as (emulator, base_url, core):
        for source, text in corpus(30):
            await core.ingest(text, source=source, mode="async")
        wait = ["--lease-wait", "120", "--max-batch-size", "4"]
        workers: list[Worker] = []
        try:
            standby = supervisor(tmp_path, postgres_url, base_url, "worker-0", *wait)
            workers.append(standby)
            for round_ in range(1, 4):
                active = standby
                await _wait_any_active([active])
                standby = supervisor(tmp_path, postgres_url, base_url, f"worker-{round_}", *wait)
                workers.append(standby)
                await standby.wait_for("waiting")
                await anyio.sleep(rng.uniform(0.05, 0.8))
                active.proc.kill()
                assert await active.wait_exit() == -signal.SIGKILL
            await wait_settled(core, 30)
            standby.proc.send_signal(signal.SIGTERM)
            assert await standby.wait_exit() == 0
            await check_contracts(core, emulator, 30)
            assert await batch_texts(core) == 30
        finally:
            for worker in workers:
                worker.kill()


@posix_signals
async def test_app_processes_ingest_and_search_while_a_supervisor_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    async with serving(postgres_url) as (emulator, base_url, core):
        workers = [supervisor(tmp_path, postgres_url, base_url, "supervisor")]
        try:
            await workers[0].wait_for("active")
            apps = [
                Worker(
                    tmp_path,
                    "app",
                    "--url",
                    postgres_url,
                    "--base-url",
                    base_url,
                    "--owner",
                    f"app{i}",
                    "--docs",
                    "15",
                )
                for i in range(3)
            ]
            workers += apps
            for app in apps:
                await app.wait_for("done", within=120)
                assert await app.wait_exit() == 0
            await wait_settled(core, 45)
            workers[0].proc.send_signal(signal.SIGTERM)
            assert await workers[0].wait_exit() == 0
            await check_contracts(core, emulator, 45)
            assert len(await fetch(core, "SELECT id FROM documents")) == 45
            assert await batch_texts(core) == 30  # every third document went online
            online = await fetch(core, "SELECT SUM(texts) FROM usage_ledger WHERE route = 'online'")
            assert int(online[0][0]) == 15
            hits = [e["hits"] for app in apps for e in app.events if e["event"] == "done"]
            assert all(n > 0 for n in hits)
        finally:
            for worker in workers:
                worker.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
