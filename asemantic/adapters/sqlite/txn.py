"""Explicit transactions on an autocommit connection."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import aiosqlite

from asemantic.errors import StoreBusyError, StoreError

__all__ = ["insert_usage", "rollback", "store_error", "utc_now"]

logger = logging.getLogger(__name__)

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
    ``BEGIN``), even if this task is cancelled while waiting for it. A ``ROLLBACK`` with
    no transaction open (SQLite already rolled back, or ``BEGIN`` itself failed) fails
    harmlessly; that failure is logged and dropped. ``CancelledError`` passes through.
    """
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
