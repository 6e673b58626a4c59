"""``asemantic supervise``: stops on SIGTERM with exit 0, and the next one resumes (on
each durable engine: the processes open ``--db`` by its path or URL)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asemantic.testing.emulator import GeminiEmulator, RealClock
from tests.cli.conftest import BATCH_KEY, ONLINE_KEY, Cli, chunk_statuses

Event = dict[str, Any]
PROMPT_EXIT_SECONDS = 20.0


class Supervisor:
    """``asemantic --json supervise`` in a real process, its events read as they come."""

    def __init__(self, db: Path | str, base_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
        env.update(GEMINI_API_KEY=ONLINE_KEY, GEMINI_BATCH_API_KEY=BATCH_KEY)
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
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert line is not None, f"supervise ended early: {self.stderr()}"
            event: Event = dict(json.loads(line))
            self.events.append(event)
            if wanted(event):
                return event

    def terminate(self) -> tuple[int, Event]:
        """SIGTERM, then the exit status (bounded wait) and the final event."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=PROMPT_EXIT_SECONDS)
        final = self.wait_for(lambda e: e["event"] == "stopped", timeout=5)
        return code, final

    def stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()


def _transition_to(status: str) -> Callable[[Event], bool]:
    return lambda e: e["event"] == "transition" and e["to"] == status


def test_sigterm_stops_gracefully_and_a_second_run_resumes(
    engine_run: Cli, emulator: GeminiEmulator, docs: Path
) -> None:
    run = engine_run
    assert run("ingest", "--mode", "async", str(docs)).exit_code == 0

    first = Supervisor(run.where, str(run.base_url))
    first.wait_for(lambda e: e["event"] == "started")
    first.wait_for(_transition_to("SUBMITTED"))
    code, final = first.terminate()
    stderr = first.stderr()
    assert code == 0, stderr
    assert final["reason"] == "signal" and final["running_remotely"] == 1
    assert [b.state for b in emulator.batches] == ["BATCH_STATE_PENDING"]  # left running
    assert "Traceback" not in stderr and ONLINE_KEY not in stderr and BATCH_KEY not in stderr

    emulator.complete_all()
    second = Supervisor(run.where, str(run.base_url))
    second.wait_for(_transition_to("COMPLETED"))
    deadline = time.monotonic() + 15
    while emulator.remote_leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    code, final = second.terminate()
    assert code == 0, second.stderr()
    assert final["running_remotely"] == 0
    assert final["chunks"] == {"READY": 4, "PENDING": 0, "FAILED": 0}
    assert chunk_statuses(run.where) == {"READY": 4}
    assert not emulator.remote_leftovers()
    created = [e for e in first.events + second.events if e["event"] == "transition"]
    assert [(e["from"], e["to"]) for e in created] == [
        ("CREATED", "SUBMITTED"),
        ("SUBMITTED", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
    ]


def test_until_idle_in_process(tmp_path: Path, docs: Path) -> None:
    emulator = GeminiEmulator(clock=RealClock(), pending_seconds=0.2, running_seconds=0.3)
    with emulator.serve() as url:
        run = Cli(db=tmp_path / "kb.db", base_url=url)
        assert run("ingest", "--mode", "async", str(docs)).exit_code == 0
        result = run("supervise", "--until-idle", "--poll-interval", "0.2", "--min-batch-size", "1")
    assert result.exit_code == 0, result.output
    assert "CREATED -> SUBMITTED" in result.stdout
    assert "PROCESSING -> COMPLETED" in result.stdout
    assert "idle: every chunk is embedded" in result.stdout
    assert "status: chunks READY 4 · PENDING 0 · FAILED 0" in result.stdout
