"""The engines the contract suite runs over: one entry in ``ENGINES`` per engine.

Each opener gets a fresh temporary directory and the embedding space, and returns an
open :class:`~asemantic.ports.Store` of an empty database; the ``store`` fixture closes
it afterwards. A new engine (PostgreSQL, say) plugs in by adding its opener here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import Store
from asemantic.testing import MemoryStore

SPACE = EmbeddingSpace()
"""The default space (gemini-embedding-001, 768 dimensions)."""

Opener = Callable[[Path, EmbeddingSpace], Awaitable[Store]]


async def _open_memory(directory: Path, space: EmbeddingSpace) -> Store:
    return MemoryStore(space=space)


async def _open_sqlite(directory: Path, space: EmbeddingSpace) -> Store:
    # A cast until SqliteStore grows ``jobs`` and ``stats`` (then it is a Store as is).
    return cast(Store, await SqliteStore.open(directory / "kb.db", space=space))


ENGINES: dict[str, Opener] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
}


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@pytest.fixture
async def store(engine: str, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store of a fresh database in :data:`SPACE`, closed afterwards."""
    opened = await ENGINES[engine](tmp_path, SPACE)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def other_store(engine: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A second, separate database of the same engine."""
    directory = tmp_path / "other"
    directory.mkdir()
    opened = await ENGINES[engine](directory, SPACE)
    try:
        yield opened
    finally:
        await opened.aclose()
