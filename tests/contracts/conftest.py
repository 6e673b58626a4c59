"""Fixtures of the contract tests: the engine, its databases, the crash zygote,
emulators, and the figures table.

The contract tests are about durability, so they run on the durable engines (SQLite
and PostgreSQL); the memory engine is collected and skipped with the reason.

The figures (crash points x runs, kills, survivals) are printed at the end of the
session, for the README's reliability section.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import pytest

from asemantic.testing.emulator import Fault, FaultScript, GeminiEmulator, RealClock
from asemantic.testing.postgres import LocalPostgres
from tests.contracts.crashee import Outcome, Spec
from tests.contracts.harness import Target
from tests.support import ENGINES, NOT_DURABLE, engine_params
from tests.support import engine_server as engine_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=engine_params(ENGINES, skip={"memory": NOT_DURABLE}))
def engine(request: pytest.FixtureRequest) -> str:
    """The durable engine a contract test runs on."""
    return cast(str, request.param)


NewTarget = Callable[[Path], Awaitable[Target]]
"""Makes a fresh empty database for a run whose files live in the given folder."""


@pytest.fixture
async def new_target(engine: str, engine_server: LocalPostgres | None) -> AsyncIterator[NewTarget]:
    """Fresh databases of the test's engine: a file in the run's folder, or a new
    PostgreSQL database (each dropped after the test)."""
    server = engine_server
    made: list[str] = []

    async def new(folder: Path) -> Target:
        if engine == "memory":  # a test that opens its database once (not a crash test)
            return ":memory:"
        if server is None:
            return folder / "kb.db"
        url = await server.create_database(prefix="asemantic_crash")
        made.append(url)
        return url

    try:
        yield new
    finally:
        if server is not None:
            for url in made:
                await server.drop_database(url)


class Zygote:
    """The warm process that forks crash children (see :mod:`tests.contracts.crashee`)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._lock = threading.Lock()

    def run(self, spec: Spec) -> Outcome:
        """Fork a child for ``spec`` and wait until it is gone (blocking)."""
        stdin = cast(IO[str], self._process.stdin)
        stdout = cast(IO[str], self._process.stdout)
        with self._lock:
            stdin.write(json.dumps(spec) + "\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError(f"the crash zygote died (exit {self._process.poll()})")
        return cast(Outcome, json.loads(line))

    async def arun(self, spec: Spec) -> Outcome:
        return await asyncio.to_thread(self.run, spec)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()  # our own zygote, by its handle
            self._process.wait()
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.contracts.crashee", "zygote"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    forker = Zygote(process)
    try:
        yield forker
    finally:
        forker.close()


def fast_emulator() -> GeminiEmulator:
    """An emulator on the real clock whose jobs finish in about 70 ms."""
    return GeminiEmulator(clock=RealClock(), pending_seconds=0.02, running_seconds=0.05)


TRANSIENT_FAULTS: dict[str, tuple[str, ...]] = {
    "batches.create": ("429", "503", "503 response lost"),
    "batches.get": ("429", "503"),
    "files.download": ("500", "503"),
}
"""Per endpoint, the transient faults :class:`TransientFaults` picks from. A 429 on a
create is a refusal (nothing made); a 503 leaves its outcome unknown (nothing made);
"response lost" makes the job and then answers 503. Polls and downloads are retried by
the client (three attempts), so a fault there is hidden or fails that one call."""


class TransientFaults(FaultScript):
    """Scripted faults first; then, while :attr:`on`, a random transient fault on a
    ``rate`` share of the calls to :data:`TRANSIENT_FAULTS`' endpoints (seeded, so a
    run's faults follow from its seed and its calls). ``injected`` counts them."""

    def __init__(self, rng: random.Random, *, rate: float) -> None:
        super().__init__()
        self.on = True
        self.injected: Counter[str] = Counter()
        self._rng = rng
        self._rate = rate
        self._pick_lock = threading.Lock()

    def take_request_fault(self, endpoint: str) -> Fault | None:
        scripted = super().take_request_fault(endpoint)
        kinds = TRANSIENT_FAULTS.get(endpoint)
        if scripted is not None or not kinds or not self.on:
            return scripted
        with self._pick_lock:
            if self._rng.random() >= self._rate:
                return None
            kind = self._rng.choice(kinds)
            self.injected[f"{endpoint} {kind}"] += 1
        status = int(kind.split()[0])
        return Fault(endpoint=endpoint, status=status, lose_response="lost" in kind)


class FlakyEmulator(GeminiEmulator):
    """:func:`fast_emulator` whose fault script also injects :class:`TransientFaults`."""

    def __init__(self, faults: TransientFaults) -> None:
        super().__init__(clock=RealClock(), pending_seconds=0.02, running_seconds=0.05)
        self._faults = faults
        self.transient = faults


@dataclass
class Row:
    runs: int = 0
    killed: int = 0
    survived: int = 0


@dataclass
class Figures:
    """Crash runs per point: how many ran, were killed, and passed every check."""

    rows: dict[str, Row] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def ran(self, label: str, *, killed: bool) -> Row:
        """Count a run; the caller adds to ``survived`` once every check passed."""
        row = self.rows.setdefault(label, Row())
        row.runs += 1
        row.killed += int(killed)
        return row

    def table(self) -> list[str]:
        out = [f"{'crash point':<56} {'runs':>5} {'killed':>7} {'survived':>9}"]
        for label, row in sorted(self.rows.items()):
            out.append(f"{label:<56} {row.runs:>5} {row.killed:>7} {row.survived:>9}")
        total = Row()
        for row in self.rows.values():
            total.runs += row.runs
            total.killed += row.killed
            total.survived += row.survived
        out.append(f"{'total':<56} {total.runs:>5} {total.killed:>7} {total.survived:>9}")
        return out + self.lines


_FIGURES = pytest.StashKey[Figures]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    return request.config.stash.setdefault(_FIGURES, Figures())


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    figures = config.stash.get(_FIGURES, None)
    if figures is None or not figures.rows:
        return
    terminalreporter.section("crash consistency figures (tests/contracts)")
    for line in figures.table():
        terminalreporter.write_line(line)
