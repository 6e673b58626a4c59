"""Fixtures every suite shares (suite-specific ones live in each suite's conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from asemantic.testing.postgres import LocalPostgres


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The knowledge base file of a test."""
    return tmp_path / "kb.db"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One PostgreSQL server for the whole run, started when a test first needs it.

    ``$ASEMANTIC_TEST_POSTGRES_URL`` names an existing server to use instead.
    """
    server = LocalPostgres.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: LocalPostgres) -> AsyncIterator[str]:
    """The URL of an empty database (with ``vector``) of this test's own, dropped after."""
    url = await postgres_server.create_database()
    try:
        yield url
    finally:
        await postgres_server.drop_database(url)
