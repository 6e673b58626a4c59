"""Concurrency: two supervisors on one database (in two real processes), many writers at once.

The two-process tests run on the durable engines (a SQLite file, a PostgreSQL database:
each worker opens it by its path or URL); the memory engine cannot be shared by two
processes, so they skip there, saying so. The many-writers test runs on every engine.

* Exactly one supervisor is active per database: a second one is refused (or waits);
  a supervisor frozen with SIGSTOP loses its lease once ``lease_ttl`` passes, another
  process takes over, and when the frozen one is woken with SIGCONT it stops without
  doing anything: every job was created remotely once and every result applied once.
* Ingestion from many tasks over several connections, in both modes, while a
  supervisor applies batch results: no "database is locked" reaches a caller, no
  document is lost, every chunk ends READY with exactly one vector.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from asemantic import (
    BatchSupervisor,
    CoreConfig,
    EmbeddingStatus,
    GeminiSettings,
    GoogleKeyring,
    IngestMode,
    JobStatus,
    SemanticCore,
    SupervisorLeaseError,
)
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.emulator.routes import match
from asemantic.testing.emulator.wire import EmulatorRequest, EmulatorResponse
from tests.robustness.conftest import (
    BATCH_KEY,
    DEFAULT_KEY,
    SPACE,
    OpenCore,
    batch_texts_applied,
    check_contracts,
    corpus,
    count,
    eventually,
    fast_retry,
    keep_completing,
    successful_creates,
    vector_counts,
)
from tests.support import Databases, fast_supervisor

SHARED_BY_PROCESSES = "two processes cannot share an in-memory database"

ROOT = Path(__file__).resolve().parents[2]
LEASE_TTL = 3.0

posix_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGSTOP") or not Path("/proc/self/stat").exists(),
    reason="needs SIGSTOP/SIGCONT and /proc",
)


class Worker:
    """A ``supervisor_worker`` subprocess and the JSON events it prints."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        env = {
            **os.environ,
            "ROBUST_DEFAULT_KEY": DEFAULT_KEY,
            "ROBUST_BATCH_KEY": BATCH_KEY,
            "PYTHONPATH": str(ROOT),
        }
        name = args[args.index("--owner") + 1]
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.robustness.supervisor_worker", *args],
            cwd=ROOT,
            env=env,
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

    def _drain(self) -> None:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            self.events.append(json.loads(line))

    def names(self) -> list[str]:
        self._drain()
        return [event["event"] for event in self.events]

    async def wait_for(self, name: str, *, within: float = 30.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            while True:
                self._drain()
                for event in self.events:
                    if event["event"] == name:
                        return event
                if self.proc.poll() is not None and self._lines.empty():
                    self._drain()
                    if not any(event["event"] == name for event in self.events):
                        raise AssertionError(
                            f"worker exited ({self.proc.returncode}) before {name!r}: "
                            f"{self.names()} {self.stderr_path.read_text(errors='replace')}"
                        )
                await anyio.sleep(0.01)

    def state(self) -> str:
        """The process state letter from /proc (``T``: stopped)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]

    async def wait_exit(self, *, within: float = 20.0) -> int:
        with anyio.fail_after(within):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a process, no event to wait on
                await anyio.sleep(0.02)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


async def _lease_owner(core: SemanticCore) -> str | None:
    lease = await core.batch_jobs.current_lease()
    return lease.owner if lease is not None else None


async def _shared_target(databases: Databases, db_path: Path) -> str:
    """The database both processes open: a file's path or a PostgreSQL URL."""
    if not databases.durable:
        pytest.skip(SHARED_BY_PROCESSES)
    return await databases.url(db_path)


async def _settled(core: SemanticCore, n: int) -> bool:
    counts = await core.store.count_chunks_by_status()
    return counts["READY"] == n and not await core.batch_jobs.jobs(uncleaned=True)


@posix_signals
async def test_a_sigstopped_supervisor_is_replaced_and_nothing_is_applied_twice(
    tmp_path: Path, db_path: Path, keys: GoogleKeyring, databases: Databases
) -> None:
    target = await _shared_target(databases, db_path)
    emulator = GeminiEmulator(api_keys=[DEFAULT_KEY, BATCH_KEY])
    async with emulator.serve() as base_url:
        core = await SemanticCore.open(
            target,
            keys=keys,
            config=CoreConfig(space=SPACE),
            gemini=GeminiSettings(base_url=base_url, retry=fast_retry()),
        )
        common = ["--db", target, "--base-url", base_url, "--max-batch-size", "10"]
        workers: list[Worker] = []
        try:
            for source, text in corpus(40):
                await core.ingest(text, source=source, mode="async")
            first = Worker(
                tmp_path,
                *common,
                "--owner",
                "worker-A",
                "--lease-ttl",
                str(LEASE_TTL),
                "--freeze-after-submit",
            )
            workers.append(first)
            await first.wait_for("active")
            # While A holds the lease, another supervisor is refused at once ...
            with pytest.raises(SupervisorLeaseError, match="worker-A"):
                async with BatchSupervisor(core, fast_supervisor(lease_wait=0), owner="parent"):
                    pass
            await first.wait_for("freezing")
            await eventually(lambda: first.state() == "T", within=10)
            frozen_at = time.monotonic()
            # ... and one that waits takes over once A's lease has expired.
            second = Worker(
                tmp_path,
                *common,
                "--owner",
                "worker-B",
                "--lease-ttl",
                "30",
                "--lease-wait",
                "60",
            )
            workers.append(second)
            async with anyio.create_task_group() as helpers:
                helpers.start_soon(keep_completing, emulator)
                await second.wait_for("active", within=60)
                assert time.monotonic() - frozen_at < 60  # promptly, in a generous sense
                assert first.state() == "T"  # A was still frozen when B took over
                await eventually(lambda: _settled(core, 40), within=60)
                assert await _lease_owner(core) == "worker-B"
                # Wake A: it learns that its lease is gone and stops, doing nothing.
                os.kill(first.proc.pid, signal.SIGCONT)
                exited = await first.wait_for("exited")
                assert "taken over" in (exited["last_error"] or "")
                assert await first.wait_exit() == 0
                after_thaw = first.names()[first.names().index("thawed") :]
                assert "transition" not in after_thaw, first.events
                # More work after the wake-up is handled by B alone.
                for source, text in corpus(10, start=40):
                    await core.ingest(text, source=source, mode="async")
                await eventually(lambda: _settled(core, 50), within=60)
                assert await _lease_owner(core) == "worker-B"
                helpers.cancel_scope.cancel()
            second.proc.send_signal(signal.SIGTERM)
            await second.wait_for("exited")
            assert await second.wait_exit() == 0

            # Nothing applied twice, nothing created twice, nothing left behind.
            jobs = await core.batch_jobs.jobs()
            assert len(jobs) >= 5
            assert successful_creates(emulator) == len(jobs)
            assert len({job.remote_name for job in jobs}) == len(jobs)
            completed = [
                sum(
                    t.to_status is JobStatus.COMPLETED for t in await core.batch_jobs.transitions(j)
                )
                for j in (job.job_id for job in jobs)
            ]
            assert completed == [1] * len(jobs)
            assert await vector_counts(core) == (50, 50)
            assert await batch_texts_applied(core) == 50
            assert await _lease_owner(core) is None
            await check_contracts(core, emulator)
            transitions = [e["to"] for e in first.events if e["event"] == "transition"]
            assert transitions == ["SUBMITTED"]  # A did one thing, then froze
            done_by_b = [e for e in second.events if e.get("to") == "COMPLETED"]
            assert len(done_by_b) == len(jobs)
        finally:
            for worker in workers:
                worker.kill()
            await core.aclose()


class HeldCreates(GeminiEmulator):
    """The emulator, holding each ``batches.create`` between :meth:`hold` and :meth:`release`.

    A held create waits on the server's handler thread before the emulator sees it, so
    the job it asks for does not exist yet; ``held`` is set once one is waiting.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.held = threading.Event()
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        route = match(request)
        if route is not None and route.endpoint == "batches.create" and not self._open.is_set():
            self.held.set()
            self._open.wait(timeout=120)
        return super().handle(request)


@posix_signals
async def test_a_supervisor_woken_during_the_take_over_duplicates_nothing(
    tmp_path: Path, db_path: Path, keys: GoogleKeyring, databases: Databases
) -> None:
    """A wakes while B is inside a create of a job A had planned to submit too.

    A plans all 8 jobs in one pass and freezes right after submitting the first; B takes
    over once A's lease has expired and reconciles the 7 others. B's first create is held
    by the emulator until A has woken, noticed that its lease is gone and exited.
    """
    target = await _shared_target(databases, db_path)
    emulator = HeldCreates(api_keys=[DEFAULT_KEY, BATCH_KEY])
    async with emulator.serve() as base_url:
        core = await SemanticCore.open(
            target,
            keys=keys,
            config=CoreConfig(space=SPACE),
            gemini=GeminiSettings(base_url=base_url, retry=fast_retry()),
        )
        # A held create must not time out in B (a timed-out create has an unknown outcome).
        common = [
            "--db",
            target,
            "--base-url",
            base_url,
            "--max-batch-size",
            "5",
            "--timeout",
            "120",
        ]
        workers: list[Worker] = []
        try:
            for source, text in corpus(40):
                await core.ingest(text, source=source, mode="async")
            first = Worker(
                tmp_path,
                *common,
                "--owner",
                "worker-A",
                "--lease-ttl",
                "1.0",
                "--freeze-after-submit",
            )
            workers.append(first)
            await first.wait_for("freezing")
            await eventually(lambda: first.state() == "T", within=10)
            assert successful_creates(emulator) == 1
            planned = await core.batch_jobs.jobs((JobStatus.CREATED,))
            assert len(planned) == 7  # planned by A in the same pass, not submitted yet
            assert all(job.create_attempted_at is None for job in planned)
            emulator.hold()
            second = Worker(
                tmp_path,
                *common,
                "--owner",
                "worker-B",
                "--lease-ttl",
                "30",
                "--lease-wait",
                "60",
            )
            workers.append(second)
            assert await anyio.to_thread.run_sync(emulator.held.wait, 60)
            assert await _lease_owner(core) == "worker-B"
            os.kill(first.proc.pid, signal.SIGCONT)  # B is inside a create of A's plan
            exited = await first.wait_for("exited")
            assert await first.wait_exit() == 0
            assert "taken over" in (exited["last_error"] or "")
            after_thaw = first.names()[first.names().index("thawed") :]
            assert "transition" not in after_thaw, first.events
            assert successful_creates(emulator) == 1  # A created nothing after it woke
            emulator.release()
            async with anyio.create_task_group() as helpers:
                helpers.start_soon(keep_completing, emulator)
                await eventually(lambda: _settled(core, 40), within=60)
                helpers.cancel_scope.cancel()
            second.proc.send_signal(signal.SIGTERM)
            await second.wait_for("exited")
            assert await second.wait_exit() == 0
            jobs = await core.batch_jobs.jobs()
            assert len(jobs) == 8
            assert successful_creates(emulator) == len(emulator.requests_to("batches.create"))
            assert successful_creates(emulator) == len(jobs)
            assert len({job.remote_name for job in jobs}) == len(jobs)
            submitted_by_b = [e for e in second.events if e.get("to") == "SUBMITTED"]
            assert len(submitted_by_b) == 7
            assert await vector_counts(core) == (40, 40)
            assert await batch_texts_applied(core) == 40
            await check_contracts(core, emulator)
        finally:
            emulator.release()
            for worker in workers:
                worker.kill()
            await core.aclose()


@pytest.mark.parametrize("connections", [1, 3])
async def test_many_writers_while_a_supervisor_applies_results(
    open_core: OpenCore,
    emulator: GeminiEmulator,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
    connections: int,
) -> None:
    """8 tasks x 20 documents, alternating sync and async, over ``connections`` cores."""
    caplog.set_level(logging.WARNING)
    supervised = await open_core()
    writers = [supervised] + [await open_core(db_path) for _ in range(connections - 1)]
    tasks, per_task = 8, 20
    errors: list[BaseException] = []
    modes: dict[str, IngestMode] = {}

    async def writer(index: int) -> None:
        core = writers[index % len(writers)]
        for j, (source, text) in enumerate(corpus(per_task, start=index * per_task)):
            mode = "sync" if (index + j) % 2 else "async"
            try:
                result = await core.ingest(text, source=source, mode=mode)
            except Exception as exc:
                errors.append(exc)
                raise
            modes[source] = result.mode

    async def searcher() -> None:
        core = writers[-1]
        while True:
            await core.search("refund invoice", k=5)
            await anyio.sleep(0.005)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            helpers.start_soon(searcher)
            async with BatchSupervisor(supervised, fast_supervisor()) as supervisor:
                async with anyio.create_task_group() as group:
                    for index in range(tasks):
                        group.start_soon(writer, index)
                await supervisor.wait_until_idle()
                health = supervisor.health
            helpers.cancel_scope.cancel()

    total = tasks * per_task
    assert not errors
    assert health.paused_reason is None
    assert health.last_error is None  # not one tick failed (no lock error inside either)
    assert len(modes) == total
    assert {IngestMode.SYNC, IngestMode.ASYNC} <= set(modes.values())
    assert await count(supervised, "documents") == total
    assert await supervised.store.count_chunks_by_status() == {
        EmbeddingStatus.READY.value: total,
        EmbeddingStatus.PENDING.value: 0,
        EmbeddingStatus.FAILED.value: 0,
    }
    assert await vector_counts(supervised) == (total, total)
    batched = sum(mode is IngestMode.ASYNC for mode in modes.values())
    assert await batch_texts_applied(supervised) == batched
    await check_contracts(supervised, emulator)
    # Lock waits stay inside the library (busy_timeout, row locks); none surfaced.
    assert not [r for r in caplog.records if "locked" in r.getMessage()]
