"""Fixtures for the command-line tests: a loopback emulator, a runner, a docs folder.

``run`` works on a SQLite file (the tests of what the command line does to files);
``engine_run`` runs the same commands with ``--db`` on each durable engine (a SQLite
path, a PostgreSQL URL). Each command is a new open of the database, so an in-memory
database would not outlive it: the memory engine is skipped there, saying so.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asemantic.adapters.factory import open_store
from asemantic.cli import cli
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.postgres import LocalPostgres
from tests.support import ENGINES, engine_params

ONLINE_KEY = "cli-online-key-7f3a9c51"
BATCH_KEY = "cli-batch-key-2b8e41d6"

CLEAN_ENV: dict[str, str | None] = {
    "GEMINI_API_KEY": ONLINE_KEY,
    "GEMINI_BATCH_API_KEY": BATCH_KEY,
    "ASEMANTIC_DB": None,
    "GOOGLE_API_KEY": None,
    "GOOGLE_GEMINI_BASE_URL": None,
    "FORCE_COLOR": None,
    "COLUMNS": "120",
}

DOCS: dict[str, str] = {
    "refunds.md": "# Refunds\n\nCustomers get a refund within thirty days. Refund requests "
    "go to the billing team, and a refund reaches the card in five days.\n",
    "outage.md": "# Payment outage\n\nThe payment gateway certificate expired and card "
    "payments failed for an hour. The outage ended when the certificate was renewed.\n",
    "nested/adr.markdown": "# Decisions\n\nWe rejected postgres because a database server "
    "on every laptop is too heavy. SQLite keeps everything in one file.\n",
    "notes/vacation.txt": "Vacation policy. Everyone gets twenty-five vacation days a "
    "year; unused vacation days carry over until March.\n",
    "notes/picture.png": "not really a picture",
    ".hidden/secret.md": "# Hidden\n\nnever ingested\n",
}


@dataclass
class Cli:
    """Runs ``asemantic`` in-process with a database and (optionally) a base URL."""

    db: Path
    base_url: str | None
    url: str | None = None
    """A database URL to use instead of the file ``db`` (another engine)."""
    env: dict[str, str | None] = field(default_factory=lambda: dict(CLEAN_ENV))

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str | None] | None = None,
        base_url: str | None = None,
        db: Path | None = None,
    ) -> Result:
        argv: list[str] = ["--db", str(db or self.where)]
        url = base_url or self.base_url
        if url:
            argv += ["--base-url", url]
        return invoke([*argv, *args], env={**self.env, **(env or {})})

    @property
    def where(self) -> Path | str:
        """The database the commands use: the URL, else the file."""
        return self.url or self.db


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(cli, list(args), env={**CLEAN_ENV, **(env or {})}, catch_exceptions=False)


@pytest.fixture
def emulator() -> GeminiEmulator:
    """An emulator on a manual clock: jobs move only when the test says so."""
    return GeminiEmulator(pending_seconds=10, running_seconds=60)


@pytest.fixture
def base_url(emulator: GeminiEmulator) -> Iterator[str]:
    with emulator.serve() as url:
        yield url


@pytest.fixture
def run(tmp_path: Path, base_url: str) -> Cli:
    return Cli(db=tmp_path / "kb.db", base_url=base_url)


ONE_PROCESS_PER_COMMAND = "each command opens the database anew: memory would not outlive it"


@pytest.fixture(params=engine_params(ENGINES, skip={"memory": ONE_PROCESS_PER_COMMAND}))
def cli_engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cli_db(cli_engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path | str]:
    """The ``--db`` of a test on ``cli_engine``: a file path, or a fresh database's URL."""
    if cli_engine == "sqlite":
        yield tmp_path / "kb.db"
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    url = asyncio.run(server.create_database())
    try:
        yield url
    finally:
        asyncio.run(server.drop_database(url))


@pytest.fixture
def engine_run(cli_db: Path | str, base_url: str, tmp_path: Path) -> Cli:
    if isinstance(cli_db, Path):
        return Cli(db=cli_db, base_url=base_url)
    return Cli(db=tmp_path / "kb.db", base_url=base_url, url=cli_db)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rows(db: Path | str, table: str) -> int:
    """How many rows ``table`` holds (0 if the database file does not exist); a URL's
    database is read through the ports (``documents``, ``chunks`` or ``batch_jobs``)."""
    if isinstance(db, str):
        return asyncio.run(_rows(db, table))
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def _rows(url: str, table: str) -> int:
    store = await open_store(url, space=None)
    try:
        if table == "documents":
            return (await store.stats()).documents
        if table == "chunks":
            return len(await store.chunk_records())
        assert table == "batch_jobs", table
        return len(await store.jobs.jobs())
    finally:
        await store.aclose()


def chunk_statuses(db: Path | str) -> dict[str, int]:
    """Chunks per status (those present), read through the ports."""

    async def read() -> dict[str, int]:
        store = await open_store(db, space=None)
        try:
            counts = await store.count_chunks_by_status()
        finally:
            await store.aclose()
        return {status: n for status, n in counts.items() if n}

    return asyncio.run(read())


def assert_clean_error(result: Result, code: int, *needles: str) -> None:
    """Exit ``code``, one ``error:`` line and a hint on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[errors[0] + 1 :][:1] and lines[errors[0] + 1].startswith("hint: "), lines
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
