"""Explicit transactions on an autocommit connection."""

from __future__ import annotations

import logging

import aiosqlite

__all__ = ["rollback"]

logger = logging.getLogger(__name__)


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
