"""Fixtures every suite shares (suite-specific ones live in each suite's conftest)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from asemantic.testing.postgres import LocalPostgres


@pytest.fixture(scope="session", autouse=True)
def private_temp_dir() -> Iterator[Path]:
    """The run's own temp folder, for the code under test and every process it starts.

    Crash tests kill processes on purpose, mid-upload too, and a killed process cannot
    remove its temp files: they end here, and the folder is removed after the run, so
    the machine's temp folder is left as it was found.
    """
    path = Path(tempfile.mkdtemp(prefix="asemantic-tests-"))
    # Registered before any server starts, so it runs after their exit handlers (which
    # may still touch their lock files in here).
    atexit.register(shutil.rmtree, path, True)
    saved_env, saved_module = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved_module
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)


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
