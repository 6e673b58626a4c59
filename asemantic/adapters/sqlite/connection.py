"""Connections: driver selection, opening, WAL, transactions and error translation.

Connections that can load sqlite-vec, wrapped for asyncio by aiosqlite.

Many Pythons ship a ``sqlite3`` module built without extension loading (macOS system
Python, some pyenv and distribution builds): ``sqlite3.Connection`` then has no
``enable_load_extension``. asemantic uses the stdlib module when it can load extensions
and otherwise the drop-in ``sqlean`` module (package ``sqlean.py``), which bundles its
own SQLite with extension loading enabled. When neither works,
:class:`~asemantic.errors.ExtensionLoadingUnavailableError` says what to install.

``aiosqlite.connect`` always uses the stdlib module, so a connection is built as
``aiosqlite.Connection(connector, iter_chunk_size)`` around our own connector. The
database is first opened in a worker thread (so a failure to open leaves no aiosqlite
thread behind) in autocommit mode (``isolation_level=None``; the store issues ``BEGIN
IMMEDIATE``/``COMMIT`` itself); sqlite-vec is loaded, extension loading switched off
again (so SQL can never load a library) and the per-connection pragmas set; then the
connection is handed to aiosqlite, whose single thread is the only one to use it.

``journal_mode=WAL`` is a property of the file, set by :func:`enable_wal` once the
schema version has been checked (a database from a newer asemantic is refused without
touching it).

Decisions: connections are in autocommit mode and transactions are explicit
(:func:`rollback` undoes whatever is open, never masking the error at hand); every
driver error leaves the adapter as a typed :class:`~asemantic.errors.StoreError`
(:func:`store_error`); every timestamp column holds :func:`utc_now`; the usage ledger
is written by :func:`insert_usage` only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import aiosqlite
import sqlite_vec

from asemantic.errors import ExtensionLoadingUnavailableError, StoreBusyError, StoreError

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_CACHE_KIB",
    "DRIVER_MODULES",
    "Driver",
    "add_once",
    "close_quietly",
    "enable_wal",
    "insert_usage",
    "open_connection",
    "rollback",
    "select_driver",
    "store_error",
    "utc_now",
]


logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_CACHE_KIB = 16 * 1024
"""Page cache per connection. vec0 writes rewrite whole vector chunks; a cache that
holds a few of them keeps bulk vector writes fast (see ``benchmarks/bench_store.py``)."""

DRIVER_MODULES: tuple[str, ...] = ("sqlite3", "sqlean")
"""Candidate DB-API modules, in order of preference."""

_INSTALL_HINT = (
    "asemantic needs a sqlite3 module that can load the sqlite-vec extension. This "
    "Python's sqlite3 was built without extension loading (as macOS system Python and "
    "some pyenv builds are), and the drop-in driver 'sqlean' is not importable. "
    "Install it with `pip install sqlean.py` (an asemantic dependency), or use a Python "
    "whose sqlite3 supports enable_load_extension (python.org installers, Homebrew, "
    "uv-managed or conda Pythons)."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Driver:
    """A DB-API module able to load extensions (``sqlite3`` or ``sqlean``)."""

    name: str
    module: ModuleType

    @property
    def error(self) -> type[Exception]:
        """The module's base exception (sqlean's classes are not sqlite3's)."""
        error: type[Exception] = self.module.Error
        return error

    @property
    def operational_error(self) -> type[Exception]:
        error: type[Exception] = self.module.OperationalError
        return error

    @property
    def sqlite_version(self) -> tuple[int, ...]:
        return tuple(self.module.sqlite_version_info)


def can_load_extensions(module: ModuleType) -> bool:
    """Whether ``module``'s connections have ``enable_load_extension``."""
    connection = getattr(module, "Connection", None)
    return connection is not None and hasattr(connection, "enable_load_extension")


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def select_driver(
    candidates: Sequence[str] = DRIVER_MODULES,
    *,
    importer: Callable[[str], ModuleType | None] = _import,
) -> Driver:
    """The first candidate module that imports and can load extensions."""
    for name in candidates:
        module = importer(name)
        if module is not None and can_load_extensions(module):
            return Driver(name=name, module=module)
    raise ExtensionLoadingUnavailableError(_INSTALL_HINT)


def _connector(
    driver: Driver, path: str, *, busy_timeout_ms: int, query_only: bool
) -> Callable[[], Any]:
    def connect() -> Any:
        # check_same_thread=False: opened here, then used only by aiosqlite's thread.
        conn = driver.module.connect(
            path,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000.0,
            check_same_thread=False,
        )
        try:
            _load_sqlite_vec(driver, conn)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{DEFAULT_CACHE_KIB}")
            if query_only:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    return connect


def _load_sqlite_vec(driver: Driver, conn: Any) -> None:
    try:
        conn.enable_load_extension(True)
        try:
            sqlite_vec.load(conn)
        finally:
            conn.enable_load_extension(False)
    except driver.error as exc:
        raise ExtensionLoadingUnavailableError(
            f"the {driver.name} module could not load sqlite-vec ({exc}); reinstall the "
            "sqlite-vec package for this platform, or install sqlean.py"
        ) from exc


async def open_connection(
    path: str | os.PathLike[str],
    *,
    driver: Driver | None = None,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    query_only: bool = False,
    iter_chunk_size: int = 64,
) -> aiosqlite.Connection:
    """Open ``path`` with sqlite-vec loaded, foreign keys on and ``busy_timeout`` set.

    Extension loading is switched off again before this returns. The connection is in
    autocommit mode: wrap writes in ``BEGIN IMMEDIATE`` ... ``COMMIT``.
    """
    if busy_timeout_ms < 0:
        raise ValueError("busy_timeout_ms must not be negative")
    chosen = driver or select_driver()
    connector = _connector(
        chosen, os.fspath(path), busy_timeout_ms=busy_timeout_ms, query_only=query_only
    )
    # Connect in a worker thread first: a failure then leaves no aiosqlite thread
    # behind (aiosqlite's own failure path stops its thread without waiting for it).
    try:
        raw = await asyncio.to_thread(connector)
    except chosen.error as exc:
        raise StoreError(f"cannot open the database: {exc}") from exc
    conn = aiosqlite.Connection(lambda: raw, iter_chunk_size)
    await conn
    logger.debug("sqlite connection opened")
    return conn


async def enable_wal(conn: aiosqlite.Connection) -> None:
    """Put the file in WAL mode (persistent) and use ``synchronous=NORMAL``.

    NORMAL is durable across application crashes in WAL mode; a power cut may lose
    the last commits but never corrupts the file.
    """
    rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
    mode = str(rows[0][0]).lower() if rows else ""
    if mode != "wal":
        raise StoreError(f"cannot switch the database to WAL mode (journal_mode={mode})")
    await conn.execute("PRAGMA synchronous = NORMAL")


# SQLITE_BUSY and SQLITE_LOCKED (primary codes: extended ones keep them in the low byte).
_BUSY_CODES = frozenset({5, 6})


def store_error(exc: BaseException) -> StoreError:
    """The typed error for a driver error: :class:`StoreBusyError` when the database's
    lock stayed taken past ``busy_timeout``, else :class:`StoreError`."""
    code = getattr(exc, "sqlite_errorcode", None)
    message = str(exc)
    if (isinstance(code, int) and code & 0xFF in _BUSY_CODES) or (
        code is None and ("database is locked" in message or "database is busy" in message)
    ):
        return StoreBusyError(f"SQLite error: {message} (the write lock stayed taken)")
    return StoreError(f"SQLite error: {message}")


async def rollback(conn: aiosqlite.Connection) -> None:
    """``ROLLBACK`` whatever state the connection is in, never masking the error at hand.

    The statement is queued on the connection's thread behind any statement still
    running there, so it takes effect before anything queued later (another task's
    ``BEGIN``). This waits for it to finish even when the task is cancelled meanwhile
    (anyio's cancel scopes cancel again at every await), so the caller releases the
    write lock on a connection with no transaction open; such a cancellation is then
    raised. A ``ROLLBACK`` with no transaction open (SQLite already rolled back, or
    ``BEGIN`` itself failed) fails harmlessly; that failure is logged and dropped.
    """
    done = asyncio.ensure_future(_rollback(conn))
    cancelled = False
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def add_once(conn: aiosqlite.Connection, marker: str, statements: Iterable[str]) -> None:
    """Run additive DDL ``statements`` (``IF NOT EXISTS``: a second process racing this
    one changes nothing) in a transaction of their own, unless the trigger ``marker``
    they create exists already: a read-only check on every open after the first."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?", (marker,)
        )
    )
    if int(rows[0][0]):
        return
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("COMMIT")
    except BaseException:
        await rollback(conn)
        raise


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - adapter edge: nothing left to undo
        logger.debug("rollback found no open transaction")


def utc_now() -> str:
    """Now as an ISO-8601 UTC string (what every timestamp column holds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


async def insert_usage(
    conn: aiosqlite.Connection, route: str, *, texts: int, tokens: int, at: str
) -> None:
    """Add one line to the usage ledger inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO usage_ledger (at, route, texts, tokens) VALUES (?, ?, ?, ?)",
        (at, route, texts, tokens),
    )


async def close_quietly(conn: aiosqlite.Connection) -> None:
    """Close ``conn``, logging (not raising) a failure: the connection is gone either way."""
    try:
        await conn.close()
    except Exception:  # adapter edge: closing a broken connection
        logger.warning("closing a sqlite connection failed", exc_info=True)
