"""Contract 4 during a migration to another embedding space: kill -9 at any point of
it, reopen, finish; then no chunk is lost, every chunk has exactly one vector per live
space (for its current text), nothing is left remotely, no job was created twice, and
the active space is never half-switched.

The child (:func:`tests.contracts.crashee.spaces_workload`) builds space 1 through the
Batch API, migrates to 1536 dimensions while documents are edited, deleted and added,
drives both spaces' pipelines, switches, and ingests once more in sync mode. It dies at
a named point of the migration (:data:`~tests.contracts.crashee.SPACE_POINTS`) or at a
random moment. Recovery reopens the file in its active space, registers the target
if the registration never committed, drains every space, and switches if the child
did not get that far. Engines: the durable ones that hold several spaces (SQLite).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from asemantic import SemanticCore
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing.emulator import GeminiEmulator
from tests.contracts import harness
from tests.contracts.conftest import Figures, NewTarget, Zygote, fast_emulator
from tests.contracts.crashee import SPACE_POINTS, Spec
from tests.contracts.test_crash import CRASH_SEED, HANG_LIMIT, _iterations, _last_point, _log_tail

NAMED = sorted(SPACE_POINTS)


def _sqlite_only(engine: str) -> None:
    if engine != "sqlite":
        pytest.skip(f"the {engine} engine keeps one space per database in this version")


def _active(db: Path) -> tuple[int, EmbeddingSpace] | None:
    """The active space as the file records it (None: no space table or row yet)."""
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute(
                "SELECT id, model, dimensions, task_type FROM embedding_spaces "
                "WHERE state = 'active'"
            ).fetchall()
        except sqlite3.OperationalError:
            return None
    if not rows:  # killed before the file's first space was recorded
        return None
    if len(rows) != 1:
        raise AssertionError(f"{len(rows)} active spaces recorded")
    space_id, model, dimensions, task_type = rows[0]
    return int(space_id), EmbeddingSpace(model=model, dimensions=dimensions, task_type=task_type)


async def _run_child(
    zygote: Zygote, folder: Path, emulator: GeminiEmulator, db: Path, **spec: object
) -> tuple[Path, dict[str, object]]:
    log = folder / "child.log"
    async with emulator.serve() as base_url:
        full: Spec = {
            "db": str(db),
            "base_url": base_url,
            "log": str(log),
            "workload": "spaces",
            "driver": "manager",
            "kill_after": HANG_LIMIT,
            **spec,  # type: ignore[typeddict-item]
        }
        outcome = await zygote.arun(full)
    if outcome["signal"] is None and outcome["exit"] != 0:
        raise AssertionError(f"the child failed (exit {outcome['exit']}):\n{_log_tail(log)}")
    return log, dict(outcome)


async def _recover_and_check(db: Path, emulator: GeminiEmulator, *, switched: bool) -> int:
    """Reopen in the active space, finish the migration, check; the chunk count."""
    active = _active(db)
    if switched:
        assert active is not None and active[0] == 2, "a committed switch was lost"
    space = active[1] if active is not None else harness.SPACE
    core = await harness.open_in_process(db, emulator, space=space)
    try:
        assert await core.store.integrity_check() == "ok"  # as found after the crash
        spaces = {s.space_id: s for s in await core.space_status()}
        if 2 not in spaces:
            await core.space_migrate(harness.NEW_SPACE)
        await _drain(core, emulator)
        if core.store.space != harness.NEW_SPACE:
            await core.space_switch(2)
        assert await core.store.integrity_check() == "ok"
        return await _check_finished(core, emulator)
    finally:
        await core.aclose()


async def _drain(core: SemanticCore, emulator: GeminiEmulator) -> None:
    for _ in range(120):
        for manager in [core.batch_manager, *await core.space_managers()]:
            await manager.reconcile()
            await manager.flush_queue(min_size=1)
            emulator.complete_all()
            await manager.sync_status()
        if await harness.spaces_settled(core):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the pipelines did not settle: {await harness.describe(core)}")


def _direction(emulator: GeminiEmulator, text: str, title: str | None, dims: int) -> np.ndarray:
    values = emulator.embed(text, dimensions=dims, task_type="RETRIEVAL_DOCUMENT", title=title)
    return np.asarray(values, dtype=np.float64)


async def _check_finished(core: SemanticCore, emulator: GeminiEmulator) -> int:
    """Both spaces complete: one vector per chunk and space, of its current text; the
    active space is 2 and search sees every chunk; nothing left or made twice remotely."""
    chunks = await core.store.chunk_records()
    # No chunk at all is a kill before the first ingestion committed: nothing was
    # acknowledged, so nothing can be lost (the rest of the checks still apply).
    assert all(c.status == "READY" for c in chunks), await harness.describe(core)
    store = core.store
    assert hasattr(store, "spaces")
    for space_id, dims in ((1, harness.SPACE.dimensions), (2, harness.NEW_SPACE.dimensions)):
        rows = await store.spaces.vector_rows(space_id)
        ids = [chunk_id for chunk_id, _ in rows]
        assert len(ids) == len(set(ids)) == len(chunks), f"space {space_id}: {len(ids)} vectors"
        vectors = dict(rows)
        for chunk in chunks:
            got = np.frombuffer(vectors[chunk.chunk_id], dtype="<f4").astype(np.float64)
            want = _direction(emulator, chunk.vector_source, chunk.title or None, dims)
            cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
            assert cosine > 1 - 1e-5, f"space {space_id}, chunk {chunk.chunk_id}: stale vector"
    status = {s.space_id: s for s in await core.space_status()}
    assert status[2].record.active and status[1].state.value == "ready"
    hits = await core.search("refund rules", k=len(chunks) + 3, mode="vector")
    assert {h.chunk_id for h in hits} == {c.chunk_id for c in chunks}
    leftovers = emulator.remote_leftovers()
    assert not leftovers, f"remote leftovers: {leftovers}"
    jobs = [*await core.batch_jobs.jobs()]
    for manager in await core.space_managers():
        jobs += await manager.jobs.jobs()
    with_remote = sum(1 for job in jobs if job.remote_name)
    assert harness.actual_creates(emulator.requests) == with_remote, "a job was created twice"
    return len(chunks)


@pytest.mark.parametrize("point", NAMED)
async def test_kill_at_a_migration_point(
    point: str, engine: str, zygote: Zygote, tmp_path: Path, figures: Figures
) -> None:
    _sqlite_only(engine)
    emulator = fast_emulator()
    db = tmp_path / "kb.db"
    log, outcome = await _run_child(zygote, tmp_path, emulator, db, point=point, nth=1)
    row = figures.ran(f"{point} (migration)", killed=outcome["signal"] is not None)
    assert outcome["signal"] == signal.SIGKILL, f"never reached {point}:\n{_log_tail(log)}"
    switched = "hit after_space_switch" in log.read_text(errors="replace")
    chunks = await _recover_and_check(db, emulator, switched=switched)
    row.survived += 1
    print(f"{point}: killed, recovered, {chunks} chunks in both spaces")


async def test_kill_a_migration_at_random_moments(
    engine: str, zygote: Zygote, tmp_path: Path, figures: Figures, new_target: NewTarget
) -> None:
    _sqlite_only(engine)
    rng = random.Random(CRASH_SEED + 7)
    base = tmp_path / "baseline"
    base.mkdir()
    emulator = fast_emulator()
    log, outcome = await _run_child(zygote, base, emulator, base / "kb.db")
    assert outcome["exit"] == 0, _log_tail(log)
    await _recover_and_check(base / "kb.db", emulator, switched=True)
    duration = float(str(outcome["elapsed"]))
    iterations = _iterations(engine, variant=True)
    killed = 0
    for iteration in range(iterations):
        folder = tmp_path / f"run-{iteration:03d}"
        folder.mkdir()
        emulator = fast_emulator()
        delay = rng.uniform(0.0, duration * 0.95)
        log, outcome = await _run_child(
            zygote, folder, emulator, folder / "kb.db", kill_after=delay
        )
        killed += int(bool(outcome["killed_by_timer"]))
        row = figures.ran("random moment (migration)", killed=bool(outcome["killed_by_timer"]))
        switched = "hit after_space_switch" in log.read_text(errors="replace")
        try:
            await _recover_and_check(folder / "kb.db", emulator, switched=switched)
        except AssertionError as exc:
            context = f"iteration {iteration}: killed after {delay:.3f} s, after {_last_point(log)}"
            raise AssertionError(f"{context}: {exc}\n{_log_tail(log)}") from exc
        row.survived += 1
    figures.lines.append(
        f"random kills during a migration: {iterations} runs (seed {CRASH_SEED + 7}), "
        f"{killed} killed before the end, all recovered"
    )
