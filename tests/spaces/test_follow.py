"""A switch made elsewhere (another core, another process) reaches every open core at
its next search or ingestion: a core with its own embedder follows it, a core given an
embedder of the old space is told with a typed error and changes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asemantic import BatchSupervisor, EmbeddingSpaceMismatchError, SemanticCore, SpaceSwitchedError
from asemantic.adapters.gemini.embedder import GeminiEmbedder
from asemantic.testing.emulator import GeminiEmulator
from tests.spaces.conftest import NEW, OLD, OpenCore
from tests.spaces.test_migration import MULTI_SPACE_ENGINES
from tests.support import CoreOpener, corpus, fast_supervisor


def _needs_spaces(engine: str) -> None:
    if engine not in MULTI_SPACE_ENGINES:
        pytest.skip(f"the {engine} engine keeps one space per database in this version")


async def _tick(supervisor: BatchSupervisor, emulator: GeminiEmulator) -> None:
    """Submit what is queued, let the emulator finish it, apply and clean up."""
    await supervisor.run_once()
    emulator.complete_all()
    await supervisor.run_once()


async def _migrated(core: SemanticCore, emulator: GeminiEmulator) -> None:
    """``core``'s knowledge base with six documents, READY in space 1 and in space 2."""
    for source, text in corpus(6, words=20):
        await core.ingest(text, source=source, mode="async")
    supervisor = BatchSupervisor(core, fast_supervisor())
    await _tick(supervisor, emulator)
    await core.space_migrate(NEW)
    await _tick(supervisor, emulator)
    await _tick(supervisor, emulator)


async def test_a_core_follows_a_switch_made_by_another(
    engine: str, open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    _needs_spaces(engine)
    server = await open_core()
    await _migrated(server, emulator)
    operator = await open_core()
    assert server.space == OLD == operator.space

    await operator.space_switch(2)
    hits = await server.search("refund", k=3, mode="vector")
    assert server.space == NEW and server.store.space == NEW  # followed, then searched
    assert hits
    await server.ingest("# Late\n\nlate refund note", source="late", mode="sync")
    assert (await server.search("late refund note", k=1, mode="vector"))[0].source == "late"

    await _tick(BatchSupervisor(operator, fast_supervisor()), emulator)  # space 1 gets "late"
    await operator.space_rollback()
    await server.ingest("# Later\n\nlater invoice note", source="later", mode="async")
    assert server.space == OLD  # ingestion follows too
    assert (await server.search("late refund note", k=1, mode="vector"))[0].source == "late"
    assert await server.store.integrity_check() == "ok"


async def test_a_core_with_an_embedder_of_the_old_space_is_told(
    engine: str, open_core: CoreOpener, emulator: GeminiEmulator
) -> None:
    _needs_spaces(engine)
    operator = await open_core()
    await _migrated(operator, emulator)
    embedder = GeminiEmbedder(
        operator.keys,  # type: ignore[arg-type]
        space=OLD,
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
    )
    target = await open_core.target()
    async with SemanticCore.open(target, keys=operator.keys, embedder=embedder) as fixed:
        assert (await fixed.search("refund", k=1, mode="vector"))[0].source
        await operator.space_switch(2)
        before = await operator.store.stats()
        with pytest.raises(SpaceSwitchedError, match="space 2") as caught:
            await fixed.search("refund", k=1)
        assert isinstance(caught.value, EmbeddingSpaceMismatchError)
        assert caught.value.space_id == 2 and caught.value.space == NEW
        for mode in ("sync", "auto"):
            with pytest.raises(SpaceSwitchedError):
                await fixed.ingest("# New\n\nnew text", source="new", mode=mode)
        assert await operator.store.stats() == before  # nothing was written
        assert fixed.space == OLD
        # What embeds nothing goes on: keyword search, and queueing for the supervisor.
        assert (await fixed.search("refund", k=1, mode="keyword"))[0].source
        await fixed.ingest("# New\n\nnew refund text", source="new", mode="async")
        assert (await operator.search("new refund text", k=1, mode="keyword"))[0].source == "new"
    await embedder.aclose()


async def test_a_switch_from_another_process_is_followed(
    open_core: OpenCore, emulator: GeminiEmulator, tmp_path: Path, engine: str
) -> None:
    if engine != "sqlite":
        pytest.skip("a file another process can open")
    server = await open_core()
    await _migrated(server, emulator)
    env = {**os.environ, "GEMINI_API_KEY": "test-default-key-0001"}
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "asemantic.cli",
            "--db",
            str(tmp_path / "kb.db"),
            "space",
            "switch",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert server.space == OLD  # nothing happens until the next search
    hits = await server.search("refund", k=2, mode="vector")
    assert server.space == NEW and hits
