"""Contract 4 (crash consistency), with 1-3 checked after each crash.

A child process ingests documents (async mode) and runs the batch pipeline against the
emulator over loopback, and is killed with SIGKILL: at named points (it kills itself
there) or at random moments (its parent kills it). The emulator lives in this process,
so the remote state outlives the child. Then this process reopens the file, checks
what must hold at any moment, runs the pipeline to the end against the (fault-free)
emulator and checks that every chunk is READY with the vector of its current text,
that nothing is left remotely and that no job was created or applied twice.

Two variants: the killed child meets transient remote faults (429/503 on some creates,
polls and downloads, some creates made with their answer lost; recovery runs without
them), and a child that ingests in sync mode (online embedding, no batch) is killed;
its recovery runs the same ingestion again to its end.

Every test runs on each durable engine (the ``engine`` fixture: SQLite, PostgreSQL).
The points inside the SQLite adapter's transactions and its schema upgrade, and the
version-0 file, exist on SQLite only; on PostgreSQL the kills at random moments land
inside its transactions instead.

``ASEMANTIC_CRASH_ITERATIONS`` sets the number of random kills (default 30; each
variant runs half as many; on PostgreSQL, ``ASEMANTIC_CRASH_ITERATIONS_POSTGRES``,
default 16, since each of its runs also makes a database) and ``ASEMANTIC_CRASH_SEED``
their seed (printed; random by default).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from asemantic import SemanticCore
from asemantic.adapters.sqlite.schema import CURRENT_VERSION
from asemantic.testing.emulator import GeminiEmulator, JobFault
from tests.contracts import harness
from tests.contracts.conftest import (
    Figures,
    FlakyEmulator,
    NewTarget,
    TransientFaults,
    Zygote,
    fast_emulator,
)
from tests.contracts.crashee import SQLITE_POINTS, Outcome, Spec, sync_workload

CRASH_ITERATIONS = int(os.environ.get("ASEMANTIC_CRASH_ITERATIONS", "30"))
POSTGRES_ITERATIONS = int(os.environ.get("ASEMANTIC_CRASH_ITERATIONS_POSTGRES", "16"))
"""Random kills on PostgreSQL (each run also creates and drops a database)."""


def _iterations(engine: str, *, variant: bool = False) -> int:
    total = POSTGRES_ITERATIONS if engine == "postgres" else CRASH_ITERATIONS
    return max(1, total // 2) if variant else total


def _on(engine: str, label: str) -> str:
    """A figures label; SQLite's keep their names, other engines' say which."""
    return label if engine == "sqlite" else f"{label} [{engine}]"


def _sqlite_points_only(engine: str, what: str) -> None:
    if engine != "sqlite":
        pytest.skip(f"{what} exists on SQLite only")


CRASH_SEED = int(os.environ.get("ASEMANTIC_CRASH_SEED") or random.SystemRandom().randrange(2**32))
FAULT_RATE = 0.3
"""The share of creates, polls and downloads that meet a transient fault (variant)."""


@dataclass(frozen=True, kw_only=True)
class Point:
    """A named crash point: where, at which passage, in which workload."""

    name: str
    nth: int = 1
    workload: str = "pipeline"
    driver: str = "manager"
    failing_job: bool = False
    what: str = ""

    @property
    def label(self) -> str:
        suffix = f" #{self.nth}" if self.nth > 1 else ""
        via = " (supervisor)" if self.driver == "supervisor" else ""
        via += " (sync ingestion)" if self.workload == "sync" else ""
        return f"{self.name}{suffix}{via}"


HANG_LIMIT = 120.0
"""Seconds after which a child that should end by itself is killed as hung."""

EDIT = harness.FIRST_DOCS + 1
"""The document write that edits doc-0 while its job runs."""

POINTS = (
    Point(name="inside_document_write", nth=EDIT, what="an edit's transaction, uncommitted"),
    Point(name="after_document_write", nth=EDIT, what="an edit committed while its job runs"),
    Point(name="after_job_row", what="(a) job row committed, no remote create yet"),
    Point(name="after_job_row", nth=2, what="(a) second job row committed, first submitted"),
    Point(name="after_create_mark", what="create attempt recorded, nothing sent yet"),
    Point(name="after_upload", what="input file uploaded, job not created"),
    Point(name="after_remote_create", what="(b) remote job made, its name not stored"),
    Point(name="after_remote_create", nth=2, what="(b) on the second job"),
    Point(name="after_submit", what="SUBMITTED committed"),
    Point(name="inside_apply", what="(c) inside a result slice's transaction"),
    Point(name="inside_apply", nth=2, what="(c) inside the second slice's transaction"),
    Point(name="after_slice", what="(c) first slice committed, more to come"),
    Point(name="inside_release", what="inside the COMPLETE transition's transaction"),
    Point(name="after_complete", what="(d) COMPLETE committed, remote not cleaned"),
    Point(name="mid_cleanup", what="(d) remote cleanup half done"),
    Point(name="after_cleanup", what="cleanup marked, later jobs still running"),
    Point(name="after_fail", failing_job=True, what="a remote FAILED job's chunks handed back"),
    Point(name="inside_migration", workload="migration", what="(e) inside the v0 -> v1 upgrade"),
    Point(name="inside_vec_rebuild", workload="migration", what="(e) vec0 table rebuilt empty"),
    Point(name="after_migration", workload="migration", what="(e) upgrade committed"),
    Point(name="after_remote_create", driver="supervisor", what="(b) under a supervisor"),
    Point(name="after_slice", nth=2, driver="supervisor", what="(c) under a supervisor"),
    Point(name="after_complete", driver="supervisor", what="(d) under a supervisor"),
    Point(name="after_online_embed", nth=EDIT, workload="sync", what="an edit embedded online"),
    Point(name="after_usage", nth=EDIT, workload="sync", what="its usage recorded, no write"),
    Point(name="inside_document_write", nth=EDIT, workload="sync", what="edit + vectors, open"),
)

SYNC_SOURCES = {f"doc-{i}" for i in range(harness.ALL_DOCS)} - {
    "doc-1",
    f"doc-{harness.FIRST_DOCS - 1}",
}
"""The documents the sync workload leaves (it deletes two)."""


def _log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _first_passage(path: Path, point: str) -> float:
    """Seconds into the child's run when it first passed ``point`` (from its log)."""
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "hit" and parts[1] == point:
            return float(parts[3])
    raise AssertionError(f"the baseline never passed {point}")


def _last_point(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    hits = [line.split()[1] for line in text.splitlines() if line.startswith("hit ")]
    return hits[-1] if hits else "(before any point)"


async def _recover_and_check(
    crash: Crash,
    emulator: GeminiEmulator,
    *,
    exact_ledger: bool,
    supervisor: bool = False,
    workload: str = "pipeline",
) -> int:
    """Reopen after a crash, check, run to the end (by hand, or with a supervisor that
    takes over the dead one's lease), check again; the READY count.

    After a sync-mode child, "the end" is the same ingestion run again to its end."""
    crash.check_file()
    v0 = crash.v0
    core = await harness.open_in_process(crash.db, emulator)
    try:
        await harness.check_consistent(core)  # as found, right after the crash
        if workload == "sync":
            await sync_workload(core)
        if supervisor:
            await harness.drain_with_supervisor(core)
        await harness.drain(core, emulator)
        await harness.check_consistent(core)
        ready = await harness.check_vectors(core, emulator, preexisting=v0.vectors if v0 else None)
        await harness.check_settled(core, emulator)
        await harness.check_search(core)
        counts = await core.store.count_chunks_by_status()
        assert counts["FAILED"] == 0, "no job or line fault was injected, yet chunks FAILED"
        if v0 is not None:
            chunks = await core.store.chunk_records()
            migrated = sum(1 for c in chunks if c.chunk_id <= v0.chunks)
            assert migrated == v0.chunks, "chunks of the old file were lost"
        if exact_ledger:
            # Each vector the batch route wrote was written once: a slice applied
            # before a crash is not applied (nor counted) again after it.
            kept = len(v0.vectors) if v0 else 0
            assert await harness.batch_texts_applied(core) == ready - kept
        if workload == "sync":
            await _check_sync_end(core, ready)
        return ready
    finally:
        await core.aclose()


async def _check_sync_end(core: SemanticCore, ready: int) -> None:
    """Every document of the sync workload is there, no batch was used, and every
    stored vector's embedding was recorded in the usage ledger before its write."""
    sources = {c.source for c in await core.store.chunk_records()}
    assert sources == SYNC_SOURCES
    assert not await core.batch_jobs.jobs(), "sync ingestion made batch jobs"
    assert await harness.batch_texts_applied(core) == 0
    online = (await core.store.usage())["online"].texts
    assert online >= ready, f"{ready} vectors, {online} texts recorded as embedded"


@dataclass(frozen=True, kw_only=True)
class Crash:
    """One child run: its database, its log and how it ended."""

    db: harness.Target
    log: Path
    outcome: Outcome
    v0: harness.V0File | None
    before: dict[str, object] | None
    """The version-0 file's content, for a run that started from one."""

    def check_file(self) -> None:
        """Killed during an upgrade: the old file intact, or the upgrade committed."""
        if self.before is None:
            return
        assert isinstance(self.db, Path)
        after = harness.file_state(self.db)
        assert after["integrity"] == "ok"
        if after["version"] == 0:
            assert after == self.before, "an interrupted upgrade changed the version-0 file"
        else:
            assert after["version"] == CURRENT_VERSION


async def _crash_once(
    zygote: Zygote,
    folder: Path,
    emulator: GeminiEmulator,
    new_target: NewTarget,
    *,
    workload: str,
    driver: str,
    point: str | None = None,
    nth: int = 1,
    kill_after: float | None = None,
    create_grace: float = 120.0,
) -> Crash:
    """Run a child in ``folder`` against ``emulator`` (served over loopback meanwhile)."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    db = await new_target(folder)
    v0 = before = None
    if workload == "migration":  # a version-0 SQLite file
        assert isinstance(db, Path), "the version-0 workload is a SQLite file"
        v0 = harness.build_v0(db)
        before = harness.file_state(db)
    log = folder / "child.log"
    async with emulator.serve() as base_url:
        limit = HANG_LIMIT if kill_after is None else kill_after
        spec: Spec = {
            "db": str(db),
            "base_url": base_url,
            "log": str(log),
            "workload": workload,
            "driver": driver,
            "point": point,
            "nth": nth,
            "kill_after": limit,
            "create_grace": create_grace,
        }
        outcome = await zygote.arun(spec)
    if kill_after is None and outcome["killed_by_timer"]:
        raise AssertionError(f"the child hung for {limit} s:\n{_log_tail(log)}")
    if outcome["signal"] is None and outcome["exit"] != 0:
        raise AssertionError(f"the child failed (exit {outcome['exit']}):\n{_log_tail(log)}")
    return Crash(db=db, log=log, outcome=outcome, v0=v0, before=before)


@pytest.mark.parametrize("point", POINTS, ids=[p.label.replace(" ", "-") for p in POINTS])
async def test_kill_at_named_point(
    point: Point,
    engine: str,
    zygote: Zygote,
    tmp_path: Path,
    figures: Figures,
    new_target: NewTarget,
) -> None:
    if point.name in SQLITE_POINTS or point.workload == "migration":
        _sqlite_points_only(engine, f"{point.name} (inside the SQLite adapter)")
    emulator = fast_emulator()
    if point.failing_job:
        emulator.faults.add(JobFault(outcome="FAILED"))
    crash = await _crash_once(
        zygote,
        tmp_path,
        emulator,
        new_target,
        workload=point.workload,
        driver=point.driver,
        point=point.name,
        nth=point.nth,
    )
    row = figures.ran(_on(engine, point.label), killed=crash.outcome["signal"] is not None)
    assert crash.outcome["signal"] == signal.SIGKILL, (
        f"the child never reached {point.label}:\n{_log_tail(crash.log)}"
    )
    by_hand = point.driver == "manager"
    ready = await _recover_and_check(
        crash,
        emulator,
        exact_ledger=by_hand and point.workload != "sync",
        supervisor=not by_hand,
        workload=point.workload,
    )
    row.survived += 1
    print(f"{point.label}: {point.what}; killed, recovered, {ready} chunks READY")


@dataclass(frozen=True, kw_only=True)
class Kind:
    """What a randomly killed child runs, and whether it meets transient remote faults."""

    workload: str
    driver: str = "manager"
    faults: bool = False
    kill_from: str | None = None
    """Kill only after the baseline's first passage of this point: the sync child's
    first online call (which sets its HTTP client up) takes longer than the rest of
    its ingestion, so most kills would land in it."""

    @property
    def label(self) -> str:
        if self.workload == "sync":
            return "random moment (sync ingestion)"
        extra = ", faults" if self.faults else ""
        return f"random moment ({self.workload}, {self.driver}{extra})"


async def _run_kind(
    kind: Kind,
    zygote: Zygote,
    folder: Path,
    new_target: NewTarget,
    rng: random.Random,
    kill_after: float | None,
) -> tuple[Crash, GeminiEmulator, TransientFaults | None]:
    """One child of ``kind``; transient faults are switched off once it is gone."""
    faults: TransientFaults | None = None
    emulator = fast_emulator()
    if kind.faults:
        faults = TransientFaults(random.Random(rng.randrange(2**32)), rate=FAULT_RATE)
        emulator = FlakyEmulator(faults)
    crash = await _crash_once(
        zygote,
        folder,
        emulator,
        new_target,
        workload=kind.workload,
        driver=kind.driver,
        kill_after=kill_after,
        # Faults leave creates of unknown outcome: a short grace lets the child go on.
        create_grace=harness.RECOVERY_GRACE if kind.faults else 120.0,
    )
    if faults is not None:
        faults.on = False  # recovery runs without them
    return crash, emulator, faults


async def _kill_at_random(
    zygote: Zygote,
    folder: Path,
    figures: Figures,
    new_target: NewTarget,
    kinds: list[Kind],
    *,
    engine: str,
    iterations: int,
    seed: int,
    title: str,
) -> None:
    """Baselines without a kill give each kind's duration; then kill at random."""
    rng = random.Random(seed)
    duration: dict[Kind, float] = {}
    start: dict[Kind, float] = {}
    for kind in kinds:
        name = f"baseline-{kind.workload}-{kind.driver}"
        crash, emulator, _ = await _run_kind(kind, zygote, folder / name, new_target, rng, None)
        assert crash.outcome["exit"] == 0, _log_tail(crash.log)
        await _recover_and_check(
            crash, emulator, exact_ledger=_exact_ledger(kind), workload=kind.workload
        )
        duration[kind] = crash.outcome["elapsed"]
        start[kind] = _first_passage(crash.log, kind.kill_from) if kind.kill_from else 0.0

    killed = 0
    landed: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    for iteration in range(iterations):
        kind = kinds[iteration % len(kinds)]
        # Within the shortest full run seen so far, so that most runs are cut short.
        delay = rng.uniform(start[kind], duration[kind] * 0.95)
        crash, emulator, faults = await _run_kind(
            kind, zygote, folder / f"run-{iteration:03d}", new_target, rng, delay
        )
        if faults is not None:
            injected.update(faults.injected)
        was_killed = crash.outcome["killed_by_timer"]
        row = figures.ran(_on(engine, kind.label), killed=was_killed)
        if was_killed:
            killed += 1
            landed[_last_point(crash.log)] += 1
        else:
            duration[kind] = min(duration[kind], crash.outcome["elapsed"])
        try:
            await _recover_and_check(
                crash, emulator, exact_ledger=_exact_ledger(kind), workload=kind.workload
            )
        except AssertionError as exc:
            context = (
                f"iteration {iteration} (ASEMANTIC_CRASH_SEED={seed}): {kind.label} "
                f"killed after {delay:.3f} s, after {_last_point(crash.log)}"
            )
            raise AssertionError(f"{context}: {exc}\nchild log:\n{_log_tail(crash.log)}") from exc
        row.survived += 1
    where = ", ".join(f"{name} {count}" for name, count in sorted(landed.items()))
    title = _on(engine, title)
    summary = (
        f"{title}: {iterations} runs (seed {seed}), {killed} killed before "
        f"the end, all recovered; last point passed before the kill: {where}"
    )
    if injected:
        met = ", ".join(f"{name} x{count}" for name, count in sorted(injected.items()))
        summary += f"; {sum(injected.values())} transient faults met by the runs: {met}"
    figures.lines.append(summary)
    print(summary)


def _exact_ledger(kind: Kind) -> bool:
    return kind.driver == "manager" and kind.workload != "sync"


async def test_kill_at_random_moments(
    engine: str, zygote: Zygote, tmp_path: Path, figures: Figures, new_target: NewTarget
) -> None:
    kinds = [Kind(workload="pipeline"), Kind(workload="pipeline", driver="supervisor")]
    if engine == "sqlite":  # a version-0 file to upgrade
        kinds.append(Kind(workload="migration"))
    await _kill_at_random(
        zygote,
        tmp_path,
        figures,
        new_target,
        kinds,
        engine=engine,
        iterations=_iterations(engine),
        seed=CRASH_SEED,
        title="random kills",
    )


async def test_kill_at_random_moments_under_transient_remote_faults(
    engine: str, zygote: Zygote, tmp_path: Path, figures: Figures, new_target: NewTarget
) -> None:
    kinds = [Kind(workload="pipeline", faults=True)]
    kinds.append(Kind(workload="pipeline", driver="supervisor", faults=True))
    await _kill_at_random(
        zygote,
        tmp_path,
        figures,
        new_target,
        kinds,
        engine=engine,
        iterations=_iterations(engine, variant=True),
        seed=CRASH_SEED + 1,
        title="random kills, remote faults",
    )


async def test_kill_sync_ingestion_at_random_moments(
    engine: str, zygote: Zygote, tmp_path: Path, figures: Figures, new_target: NewTarget
) -> None:
    await _kill_at_random(
        zygote,
        tmp_path,
        figures,
        new_target,
        [Kind(workload="sync", kill_from="after_online_embed")],
        engine=engine,
        iterations=_iterations(engine, variant=True),
        seed=CRASH_SEED + 2,
        title="random kills, sync ingestion",
    )
