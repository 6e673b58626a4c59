"""The engines the contract suite runs over: one entry in ``ENGINES`` per engine.

Each opener gets a :class:`Place` (a fresh temporary directory, and fresh PostgreSQL
databases on request) and the embedding space, and returns an open
:class:`~asemantic.ports.Store` of an empty database; the ``store`` fixture closes it
afterwards and drops any database the place made. A new engine plugs in by adding its
opener here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from asemantic.adapters.postgres.store import PostgresStore
from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import Store
from asemantic.testing import MemoryStore
from asemantic.testing.postgres import LocalPostgres

SPACE = EmbeddingSpace()
"""The default space (gemini-embedding-001, 768 dimensions)."""


@dataclass(slots=True)
class Place:
    """Where an opener may put its database: a directory, or a new PostgreSQL database
    (the session's test server is started only when an opener asks for one)."""

    directory: Path
    request: pytest.FixtureRequest
    databases: list[str] = field(default_factory=list)

    def _server(self) -> LocalPostgres:
        return cast(LocalPostgres, self.request.getfixturevalue("postgres_server"))

    async def postgres_url(self) -> str:
        url = await self._server().create_database()
        self.databases.append(url)
        return url

    async def cleanup(self) -> None:
        while self.databases:
            await self._server().drop_database(self.databases.pop())


Opener = Callable[[Place, EmbeddingSpace], Awaitable[Store]]


async def _open_memory(place: Place, space: EmbeddingSpace) -> Store:
    return MemoryStore(space=space)


async def _open_sqlite(place: Place, space: EmbeddingSpace) -> Store:
    return await SqliteStore.open(place.directory / "kb.db", space=space)


async def _open_postgres(place: Place, space: EmbeddingSpace) -> Store:
    return await PostgresStore.open(await place.postgres_url(), space=space)


ENGINES: dict[str, Opener] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "postgres": _open_postgres,
}


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


async def _opened(engine: str, place: Place) -> AsyncIterator[Store]:
    try:
        opened = await ENGINES[engine](place, SPACE)
        try:
            yield opened
        finally:
            await opened.aclose()
    finally:
        await place.cleanup()


@pytest.fixture
async def store(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """An open store of a fresh database in :data:`SPACE`, closed afterwards."""
    async for opened in _opened(engine, Place(tmp_path, request)):
        yield opened


@pytest.fixture
async def other_store(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """A second, separate database of the same engine."""
    directory = tmp_path / "other"
    directory.mkdir()
    async for opened in _opened(engine, Place(directory, request)):
        yield opened
