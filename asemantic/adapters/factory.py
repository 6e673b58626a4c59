"""Which engine holds a knowledge base: one factory, chosen by the target's form.

``SemanticCore.open(target)`` and the CLI's ``--db`` hand their target here, and get
back a :class:`~asemantic.ports.Store` (whose ``jobs`` is the same database's
:class:`~asemantic.ports.JobStore`). Nothing above the adapters names an engine.

Decisions:

* **The target's form picks the engine**: ``":memory:"`` or ``"memory://"`` is the
  in-memory engine (gone when closed; for tests and throw-away work);
  ``postgresql://`` and ``postgres://`` URLs (libpq's URL form:
  ``postgresql://user:password@host:5432/db?sslmode=require``, or
  ``?host=/run/postgresql`` for a Unix socket) open the PostgreSQL + pgvector engine;
  a URL with a scheme the project has no engine for is refused with a clear
  :class:`~asemantic.errors.StoreError` (never taken for a file name); anything else
  is a path to a SQLite file, created if needed.
* **A store object is taken as it is**: ``SemanticCore.open(store)`` runs on a store
  the caller built (an engine with settings of its own, or a test double wrapping a
  real one); the core then owns it and closes it.
* Engines are imported when chosen, so opening a SQLite file never imports another
  engine's driver; without asyncpg a PostgreSQL URL raises a
  :class:`~asemantic.errors.StoreError` saying what to install.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidInputError, StoreError
from asemantic.ports import Store

__all__ = [
    "MEMORY_TARGETS",
    "POSTGRES_SCHEMES",
    "StoreOptions",
    "describe_target",
    "open_store",
]

MEMORY_TARGETS = frozenset({":memory:", "memory://"})
"""Targets that open the in-memory engine."""
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
"""URL schemes that open the PostgreSQL engine."""
_POSTGRES_INSTALL_HINT = 'the PostgreSQL engine needs asyncpg: pip install "asemantic[postgres]"'

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_DEFAULT_BUSY_TIMEOUT_MS = 5000
_DEFAULT_POOL_SIZE = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOptions:
    """Settings an engine may use (each engine ignores what it has no use for).

    ``busy_timeout_ms``: how long a SQLite writer waits for another's transaction.
    ``memory_index``: SQLite searches an exact in-memory copy of the vectors (off: vec0).
    ``pool_size``: the most PostgreSQL connections one store keeps open.
    """

    busy_timeout_ms: int = _DEFAULT_BUSY_TIMEOUT_MS
    memory_index: bool = True
    pool_size: int = _DEFAULT_POOL_SIZE


def describe_target(target: str | os.PathLike[str]) -> str:
    """The engine a target selects: ``"memory"``, ``"sqlite"``, or the URL's scheme."""
    text = os.fspath(target)
    if not isinstance(text, str):
        raise InvalidInputError("a database target must be a path or a URL string")
    if text in MEMORY_TARGETS:
        return "memory"
    match = _URL.match(text)
    if match is not None:
        return match.group("scheme").lower()
    return "sqlite"


async def open_store(
    target: str | os.PathLike[str] | Store,
    *,
    space: EmbeddingSpace | None,
    options: StoreOptions | None = None,
) -> Store:
    """Open (creating if needed) the knowledge base at ``target`` (see the module doc).

    ``space`` is recorded on first use; a database of another space raises
    :class:`~asemantic.errors.EmbeddingSpaceMismatchError`.
    """
    if not isinstance(target, str | os.PathLike):
        return target
    options = options or StoreOptions()
    engine = describe_target(target)
    if engine == "memory":
        from asemantic.adapters.memory import MemoryStore

        return MemoryStore(space=space)
    if engine == "sqlite":
        from asemantic.adapters.sqlite.store import SqliteStore

        return await SqliteStore.open(
            Path(os.fspath(target)),
            space=space,
            busy_timeout_ms=options.busy_timeout_ms,
            memory_index=options.memory_index,
        )
    if engine in POSTGRES_SCHEMES:
        return await _open_postgres(os.fspath(target), space=space, options=options)
    raise StoreError(
        f"no engine for {engine}:// targets; use a SQLite file path, ':memory:' or a "
        "postgresql:// URL"
    )


async def _open_postgres(url: str, *, space: EmbeddingSpace | None, options: StoreOptions) -> Store:
    try:
        from asemantic.adapters.postgres.store import PostgresStore
    except ImportError as exc:
        if getattr(exc, "name", None) in ("asyncpg", None) or "asyncpg" in str(exc):
            raise StoreError(_POSTGRES_INSTALL_HINT) from None
        raise
    return await PostgresStore.open(url, space=space, max_size=options.pool_size)
