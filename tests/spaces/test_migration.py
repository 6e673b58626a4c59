"""Migrating a knowledge base to another embedding space, end to end: the real
google-genai SDK against the emulator, a real supervisor, real databases.

Engines: SQLite and memory hold several spaces; the PostgreSQL engine keeps one space
per database in this version, and every space command is refused there with a typed
error that changes nothing (:func:`test_an_engine_with_one_space_refuses_every_command`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asemantic import BatchSupervisor, SemanticCore, copy_knowledge_base
from asemantic.adapters.factory import open_store
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.spaces import SpaceState, target_space
from asemantic.errors import (
    EmbeddingSpaceMismatchError,
    SpaceError,
    SpaceIncompleteError,
    SpacesUnsupportedError,
    TransferError,
    UnknownSpaceError,
)
from asemantic.testing.emulator import GeminiEmulator
from tests.spaces.conftest import NEW, OLD, OpenCore
from tests.support import corpus, fast_supervisor

MULTI_SPACE_ENGINES = ("memory", "sqlite")


def _needs_spaces(engine: str) -> None:
    if engine not in MULTI_SPACE_ENGINES:
        pytest.skip(f"the {engine} engine keeps one space per database in this version")


async def _tick(supervisor: BatchSupervisor, emulator: GeminiEmulator) -> None:
    """Submit what is queued, let the emulator finish it, apply and clean up."""
    await supervisor.run_once()
    emulator.complete_all()
    await supervisor.run_once()


async def _states(core: SemanticCore) -> dict[int, SpaceState]:
    return {s.space_id: s.state for s in await core.space_status()}


async def _vectors(core: SemanticCore, space_id: int) -> list[int]:
    store = core.store
    assert hasattr(store, "spaces")
    return [chunk_id for chunk_id, _ in await store.spaces.vector_rows(space_id)]


async def test_migrate_switch_rollback_drop(
    engine: str, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    _needs_spaces(engine)
    core = await open_core()
    for source, text in corpus(8, words=30):
        await core.ingest(text, source=source, mode="async")
    supervisor = BatchSupervisor(core, fast_supervisor())
    await _tick(supervisor, emulator)
    before = await core.search("refund", k=3, mode="vector")
    assert before

    plan = await core.space_plan(NEW)
    assert plan.chunks == 8 and plan.tokens > 0
    assert plan.cost_online_usd == pytest.approx(2 * plan.cost_batch_usd)
    assert await _states(core) == {1: SpaceState.ACTIVE}  # a plan writes nothing

    record = await core.space_migrate(NEW)
    assert record.space_id == 2 and record.progress.pending == 8
    assert await _states(core) == {1: SpaceState.ACTIVE, 2: SpaceState.BUILDING}
    await core.ingest("# Late refund\n\nrefund arrived late", source="late", mode="async")
    with pytest.raises(SpaceIncompleteError):
        await core.space_switch(2)
    assert [h.chunk_id for h in await core.search("refund", k=3, mode="vector")][:1] != []

    await _tick(supervisor, emulator)
    await _tick(supervisor, emulator)
    status = {s.space_id: s for s in await core.space_status()}
    assert status[2].state is SpaceState.READY and status[2].record.progress.ready == 9
    assert status[1].record.progress.ready == 9  # the new document: both spaces
    assert status[2].jobs["COMPLETED"] >= 1 and (status[2].cost_so_far_usd or 0) > 0
    assert status[1].cost_so_far_usd is None  # space 1: see core.stats()
    assert len(await _vectors(core, 2)) == 9 == len(set(await _vectors(core, 2)))
    assert await core.store.integrity_check() == "ok"

    outcome = await core.space_switch(2)
    assert outcome.previous_id == 1 and not outcome.forced
    assert core.space == NEW and core.store.space == NEW
    after = await core.search("late refund", k=3, mode="vector")
    assert after[0].source == "late"
    await core.ingest("# Sync\n\nsync refund", source="sync", mode="sync")
    assert (await core.search("sync refund", k=1, mode="vector"))[0].source == "sync"  # online
    await _tick(supervisor, emulator)  # space 1 gets it through the Batch API
    assert await _states(core) == {1: SpaceState.READY, 2: SpaceState.ACTIVE}

    with pytest.raises(SpaceError, match="active space"):
        await core.space_drop(2)
    back = await core.space_rollback()
    assert back.active.space_id == 1 and core.space == OLD
    assert (await core.search("sync refund", k=1, mode="vector"))[0].source == "sync"
    assert await core.space_drop(2) == 10
    assert await _states(core) == {1: SpaceState.ACTIVE, 2: SpaceState.RETIRED}
    with pytest.raises(SpaceError, match="dropped"):
        await core.space_switch(2)
    assert await core.store.integrity_check() == "ok"
    leftovers = emulator.remote_leftovers()
    assert not leftovers.files and not leftovers.batches


async def test_a_forced_switch_serves_what_it_has(
    engine: str, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    _needs_spaces(engine)
    core = await open_core()
    for source, text in corpus(4, words=20):
        await core.ingest(text, source=source, mode="sync")
    await core.space_migrate(NEW)
    outcome = await core.space_switch(2, force=True)
    assert outcome.forced and outcome.missing == 4
    # Nothing is embedded in space 2 yet: no vector hit, and keyword hits say so.
    assert await core.search("refund", k=3, mode="vector") == []
    found = await core.search("refund", k=3)
    assert found and {hit.embedding_status for hit in found} == {EmbeddingStatus.PENDING}
    assert all(hit.vector_rank is None for hit in found)
    await _tick(BatchSupervisor(core, fast_supervisor()), emulator)
    assert await core.search("refund", k=3, mode="vector")
    found = await core.search("refund", k=3)
    assert {hit.embedding_status for hit in found} == {EmbeddingStatus.READY}
    assert await core.store.integrity_check() == "ok"


async def test_reopening_uses_the_active_space(
    engine: str, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    _needs_spaces(engine)
    core = await open_core()
    for source, text in corpus(3, words=20):
        await core.ingest(text, source=source, mode="sync")
    await core.space_migrate(NEW)
    await _tick(BatchSupervisor(core, fast_supervisor()), emulator)
    await core.space_switch(2)
    await core.aclose()
    if engine == "sqlite":  # an opened store handed to the core is not checked again
        with pytest.raises(EmbeddingSpaceMismatchError, match="active space"):
            await open_core()
    from asemantic import CoreConfig

    reopened = await open_core(config=CoreConfig(space=NEW, create_grace_seconds=0.0))
    assert reopened.space == NEW and await reopened.search("refund", k=2)
    assert (await reopened.space_rollback()).active.space == OLD


async def test_bad_input_is_refused_and_changes_nothing(engine: str, open_core: OpenCore) -> None:
    _needs_spaces(engine)
    core = await open_core()
    await core.ingest("# A\n\nsome refund text", source="a", mode="sync")
    with pytest.raises(SpaceError, match="already"):
        await core.space_migrate(OLD)
    with pytest.raises(SpaceError, match="dimensions"):
        target_space(model="gemini-embedding-001", dimensions=0)
    with pytest.raises(SpaceError, match="model"):
        target_space(model=" ", dimensions=768)
    with pytest.raises(UnknownSpaceError):
        await core.space_switch(5)
    with pytest.raises(UnknownSpaceError):
        await core.space_drop(5)
    with pytest.raises(SpaceError, match="earlier"):
        await core.space_rollback()
    with pytest.raises(SpaceError, match="active"):
        await core.space_drop(1)
    with pytest.raises(SpaceError, match="already the active"):
        await core.space_switch(1)
    assert await _states(core) == {1: SpaceState.ACTIVE}
    await core.space_migrate(NEW)
    with pytest.raises(SpaceError, match="already"):
        await core.space_migrate(NEW)
    assert await _states(core) == {1: SpaceState.ACTIVE, 2: SpaceState.BUILDING}
    assert await core.store.integrity_check() == "ok"


async def test_an_engine_with_one_space_refuses_every_command(
    engine: str, open_core: OpenCore
) -> None:
    if engine in MULTI_SPACE_ENGINES:
        pytest.skip(f"the {engine} engine holds several spaces")
    core = await open_core()
    await core.ingest("# A\n\nsome refund text", source="a", mode="sync")
    before = await core.store.chunk_records()
    for attempt in (
        core.space_plan(NEW),
        core.space_migrate(NEW),
        core.space_status(),
        core.space_switch(2),
        core.space_rollback(),
        core.space_drop(2),
    ):
        with pytest.raises(SpacesUnsupportedError):
            await attempt
    assert await core.space_managers() == []
    assert await core.store.chunk_records() == before


async def test_a_copy_refuses_a_source_with_several_spaces(
    engine: str, open_core: OpenCore, tmp_path: Path
) -> None:
    _needs_spaces(engine)
    core = await open_core()
    await core.ingest("# A\n\nsome refund text", source="a", mode="sync")
    await core.space_migrate(NEW)
    with pytest.raises(TransferError, match="more than one embedding space"):
        await copy_knowledge_base(core.store, tmp_path / "copy.db")
    if (tmp_path / "copy.db").exists():  # opened before the refusal: nothing written
        empty = await open_store(tmp_path / "copy.db", space=None)
        try:
            assert (await empty.stats()).empty
        finally:
            await empty.aclose()
    await core.space_drop(2)
    report = await copy_knowledge_base(core.store, tmp_path / "copy.db")
    assert report.verified
