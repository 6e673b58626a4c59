"""Restarts of ``asemantic supervise`` in real processes, against a loopback emulator.

* ``kill -9`` and an immediate restart (as systemd's ``Restart=always`` would): the new
  process takes the dead one's lease over at once and resumes, instead of exiting with
  ``SupervisorLeaseError`` for up to ``lease_ttl`` (60 s by default; the restarted
  process runs with ``--lease-wait 0``, so a lease it could not take would end it).
* A run under a persistent 429 on create (with ``RetryInfo``), killed and restarted in
  the middle: the emulator never holds more than one input file per job, and the
  pipeline settles once the quota frees up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.contracts import harness

Event = dict[str, Any]


class Supervise:
    """``asemantic --json supervise`` in a real process, its events read as they come."""

    def __init__(self, db: Path, base_url: str, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        env.update(GEMINI_API_KEY=harness.DEFAULT_KEY, GEMINI_BATCH_API_KEY=harness.BATCH_KEY)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asemantic.cli",
                "--db",
                str(db),
                "--base-url",
                base_url,
                "--json",
                "supervise",
                "--poll-interval",
                "0.2",
                "--min-batch-size",
                "1",
                "--max-batch-size",
                str(harness.JOB_SIZE),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[Event] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, wanted: Callable[[Event], bool], timeout: float = 60.0) -> Event:
        """The first event ``wanted`` accepts; the bound only stops a hung test."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, f"supervise ended early: {self.stderr()}"
            event: Event = dict(json.loads(line))
            self.events.append(event)
            if wanted(event):
                return event

    def kill(self) -> None:
        """SIGKILL, and reap the process (as its service manager would)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read()


def transition_to(status: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == "transition" and e["to"] == status


@pytest.fixture
def emulator() -> GeminiEmulator:
    """Jobs move only when the test says so (``complete_all``)."""
    return GeminiEmulator(pending_seconds=3600, running_seconds=3600)


@pytest.fixture
def base_url(emulator: GeminiEmulator) -> Iterator[str]:
    with emulator.serve() as url:
        yield url


async def ingest(db: Path, base_url: str, count: int) -> None:
    core = await harness.open_over_http(db, base_url)
    try:
        for index in range(count):
            source, text = harness.document(index)
            await core.ingest(text, source=source, mode="async")
    finally:
        await core.aclose()


def lease_owner(db: Path) -> str | None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT owner FROM supervisor_lease").fetchone()
    return str(row[0]) if row else None


async def settled_checks(db: Path, base_url: str, emulator: GeminiEmulator) -> None:
    core = await harness.open_over_http(db, base_url)
    try:
        await harness.check_consistent(core)
        assert await harness.is_settled(core), await harness.describe(core)
        assert not emulator.remote_leftovers()
    finally:
        await core.aclose()


def test_kill_9_and_an_immediate_restart_resume_within_seconds(
    tmp_path: Path, emulator: GeminiEmulator, base_url: str
) -> None:
    db = tmp_path / "kb.db"
    asyncio.run(ingest(db, base_url, 4))

    first = Supervise(db, base_url)
    started = first.wait_for(lambda e: e["event"] == "started")
    first.wait_for(transition_to("SUBMITTED"))
    first.kill()
    held = lease_owner(db)
    assert held is not None and f":{started['pid']}:" in held  # the dead one's, unexpired

    emulator.complete_all()
    second = Supervise(db, base_url)  # --lease-wait 0: exits at once if not taken over
    restarted = second.wait_for(lambda e: e["event"] == "started", timeout=30)
    assert restarted["pid"] != started["pid"]
    second.wait_for(transition_to("COMPLETED"), timeout=30)
    owner = lease_owner(db)
    assert owner is not None and f":{restarted['pid']}:" in owner
    deadline = time.monotonic() + 20
    while emulator.remote_leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.terminate() == 0, second.stderr()
    stderr = second.stderr()
    assert "Traceback" not in stderr
    assert harness.BATCH_KEY not in stderr and harness.DEFAULT_KEY not in stderr
    asyncio.run(settled_checks(db, base_url, emulator))


def _inputs_per_job(emulator: GeminiEmulator) -> Counter[str]:
    return Counter(f.display_name or "" for f in emulator.files if f.source == "UPLOADED")


def test_a_persistent_429_on_create_never_leaves_two_inputs_of_one_job(
    tmp_path: Path, emulator: GeminiEmulator, base_url: str
) -> None:
    db = tmp_path / "kb.db"
    asyncio.run(ingest(db, base_url, harness.ALL_DOCS))
    emulator.faults.add(
        Fault(endpoint="batches.create", status=429, times=100_000, retry_delay=0.3)
    )
    peak = 0

    def watch(seconds: float) -> None:
        nonlocal peak
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            counts = _inputs_per_job(emulator)
            peak = max([peak, *counts.values()])
            time.sleep(0.02)

    first = Supervise(db, base_url)
    first.wait_for(lambda e: e["event"] == "started")
    status = first.wait_for(lambda e: e["event"] == "status" and bool(e.get("waiting")))
    assert "wait to be created" in status["waiting"]  # the wait shows in the live view
    watch(3.0)
    refused = len(emulator.requests_to("batches.create"))
    assert refused >= 3  # it kept trying, at the pace the provider asked for
    first.kill()
    second = Supervise(db, base_url)
    second.wait_for(lambda e: e["event"] == "started", timeout=30)
    watch(2.0)
    assert peak == 1, f"a job had {peak} input files on the remote"
    uploads = [r for r in emulator.requests_to("files.upload_start") if r.status == 200]
    assert len(uploads) == len(_inputs_per_job(emulator))  # one upload per job, ever

    emulator.faults.clear()  # the quota frees up
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        emulator.complete_all()
        if not emulator.remote_leftovers() and _all_ready(db):
            break
        time.sleep(0.1)
    assert second.terminate() == 0, second.stderr()
    assert "Traceback" not in second.stderr()
    asyncio.run(settled_checks(db, base_url, emulator))


def _all_ready(db: Path) -> bool:
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        pending = conn.execute(
            "SELECT COUNT(*) FROM chunks WHERE embedding_status != 'READY'"
        ).fetchone()[0]
        uncleaned = conn.execute(
            "SELECT COUNT(*) FROM batch_jobs WHERE cleaned_at IS NULL"
        ).fetchone()[0]
    return int(pending) == 0 and int(uncleaned) == 0
