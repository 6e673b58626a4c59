"""Connections to PostgreSQL: a pool from a URL, the pgvector codec, typed errors.

``open_pool(url)`` checks the server with one bootstrap connection (reachable, the role
accepted, the ``vector`` extension present or creatable), then opens an asyncpg pool
whose connections all carry the ``vector`` codec.

Decisions:

* **Driver: asyncpg**, chosen by measurement (``benchmarks/postgres_driver.py``, 20,000 x
  768 on this project's CI machine): executemany inserts 0.11 s vs psycopg 3's 0.16 s,
  COPY of vectors 0.80 s vs 1.22 s; a ``select 1`` round trip and an exact KNN cost
  the same with either.
* **pgvector's binary wire format, encoded here**: ``uint16 dim, uint16 unused = 0,
  dim x big-endian float32``, registered with ``set_type_codec(format="binary")`` on
  every pool connection. Values travel as asemantic's little-endian float32 blobs
  (:mod:`asemantic.adapters.vectors`) both ways, so the ``pgvector`` package is not
  needed and COPY sends vectors as binary.
* **Typed errors with a hint** (:func:`connect_error`, :func:`store_error`): refused or
  unreachable servers and lost connections are
  :class:`~asemantic.errors.StoreConnectionError`, a refused role or password
  :class:`~asemantic.errors.StoreAuthenticationError`, a missing ``vector`` extension
  the role cannot create :class:`~asemantic.errors.VectorExtensionMissingError`,
  serialization failures, deadlocks and lock time-outs
  :class:`~asemantic.errors.StoreBusyError`; anything else from the server a plain
  :class:`~asemantic.errors.StoreError` with its SQLSTATE.
* **Passwords never leave**: every URL shown is :func:`redact_url`'s, and every message
  built from a driver error has the password scrubbed out.
* The extension is created (when missing) by :func:`ensure_vector_extension`, inside the
  schema's advisory-locked transaction (:mod:`.schema`), so processes opening a fresh
  database at once do not race on it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import numpy as np

from asemantic.errors import (
    StoreAuthenticationError,
    StoreBusyError,
    StoreConnectionError,
    StoreError,
    VectorExtensionMissingError,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_MAX",
    "DRIVER_ERRORS",
    "Pool",
    "SERVER_SETTINGS",
    "connect_error",
    "decode_vector",
    "encode_vector",
    "ensure_vector_extension",
    "guarded",
    "open_connection",
    "open_pool",
    "redact_url",
    "register_vector_codec",
    "store_error",
]

logger = logging.getLogger(__name__)

Pool: TypeAlias = Any
"""An ``asyncpg.Pool`` (asyncpg ships no type hints)."""
_T = TypeVar("_T")

DEFAULT_POOL_MAX = 10
"""Connections one store keeps at most (each process has its own pool)."""
DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds a connection attempt may take before it counts as unreachable."""

SERVER_SETTINGS = {
    "application_name": "asemantic",
    "idle_in_transaction_session_timeout": "60000",
}
"""Session settings of pool connections: a process frozen inside a transaction (or
one that lost track of it) releases its row locks after a minute."""

_HEADER = struct.Struct(">HH")
_AUTH_STATES = frozenset({"28000", "28P01"})
_BUSY_STATES = frozenset({"40001", "40P01", "55P03"})
_CONNECTION_HINT = (
    "check that the PostgreSQL server is running and that the URL's host, port (or "
    "socket directory) are right"
)


# --- the URL -------------------------------------------------------------------------


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password" and value:
            return value
    return None


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or the query) shown as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            redacted = [(k, "***" if k == "password" else v) for k, v in pairs]
            query = urlencode(redacted, safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _scrub(text: str, url: str) -> str:
    secret = _password(url)
    if secret:
        text = text.replace(secret, "***")
    return text.replace(url, redact_url(url))


# --- errors --------------------------------------------------------------------------


def _sqlstate(exc: BaseException) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def connect_error(exc: BaseException, url: str) -> StoreError:
    """The typed error for a failure to connect to ``url`` (hint included)."""
    where = redact_url(url)
    detail = _scrub(str(exc) or type(exc).__name__, url)
    state = _sqlstate(exc)
    if state in _AUTH_STATES or isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StoreAuthenticationError(
            f"PostgreSQL refused the login at {where}: {detail}; check the user name and "
            "password in the URL (or PGPASSWORD / ~/.pgpass) and the server's pg_hba.conf"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(
            f"the database in {where} does not exist: {detail}; create it first "
            "(createdb, or CREATE DATABASE as a role allowed to)"
        )
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return StoreConnectionError(
            f"PostgreSQL at {where} has no connection slot left: {detail}; lower the pool "
            "size or raise max_connections"
        )
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError):
        return StoreConnectionError(
            f"cannot connect to PostgreSQL at {where}: {detail}; {_CONNECTION_HINT}"
        )
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return StoreConnectionError(f"PostgreSQL at {where} is not accepting connections: {detail}")
    return store_error(exc, url=url)


def store_error(exc: BaseException, *, url: str | None = None) -> StoreError:
    """The typed error for a driver error met while using an open connection."""
    detail = str(exc) or type(exc).__name__
    if url is not None:
        detail = _scrub(detail, url)
    state = _sqlstate(exc)
    if state in _BUSY_STATES:
        return StoreBusyError(f"PostgreSQL error {state}: {detail} (another writer held a lock)")
    if isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | ConnectionError,
    ):
        return StoreConnectionError(f"the PostgreSQL connection failed: {detail}")
    if isinstance(exc, OSError | TimeoutError):
        return StoreConnectionError(f"the PostgreSQL connection failed: {detail}")
    if state:
        return StoreError(f"PostgreSQL error {state}: {detail}")
    return StoreError(f"PostgreSQL error: {detail}")


DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)
"""What a call on an open connection may raise that :func:`store_error` translates."""


async def guarded(work: Callable[[], Awaitable[_T]], *, url: str | None = None) -> _T:
    """Run ``work``, translating driver errors into typed :class:`StoreError`."""
    try:
        return await work()
    except DRIVER_ERRORS as exc:
        raise store_error(exc, url=url) from exc


# --- the vector codec ----------------------------------------------------------------


def encode_vector(blob: bytes) -> bytes:
    """A little-endian float32 blob in pgvector's binary format."""
    values = np.frombuffer(blob, dtype="<f4")
    return _HEADER.pack(len(values), 0) + values.astype(">f4").tobytes()


def decode_vector(data: bytes) -> bytes:
    """pgvector's binary format as a little-endian float32 blob."""
    dimensions, _ = _HEADER.unpack_from(data)
    values = np.frombuffer(data, dtype=">f4", count=dimensions, offset=_HEADER.size)
    return values.astype("<f4").tobytes()


async def _extension_schema(conn: asyncpg.Connection) -> str | None:
    value = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    return None if value is None else str(value)


async def register_vector_codec(conn: asyncpg.Connection) -> None:
    """Make ``vector`` values travel as float32 blobs on ``conn`` (binary format)."""
    schema = await _extension_schema(conn)
    if schema is None:
        raise VectorExtensionMissingError(_missing_hint("it is not installed"))
    await conn.set_type_codec(
        "vector", schema=schema, encoder=encode_vector, decoder=decode_vector, format="binary"
    )


def _missing_hint(why: str) -> str:
    return (
        f"the database has no 'vector' extension (pgvector) and {why}; as a superuser "
        "or the database owner run CREATE EXTENSION vector; in this database (managed "
        "services: enable pgvector in the console first)"
    )


async def ensure_vector_extension(conn: asyncpg.Connection) -> None:
    """Create the ``vector`` extension when it is missing (inside the caller's
    transaction); :class:`VectorExtensionMissingError` if the role cannot."""
    if await _extension_schema(conn) is not None:
        return
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the caller's intact
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise VectorExtensionMissingError(_missing_hint("this role may not create it")) from exc
    except (asyncpg.UndefinedFileError, asyncpg.FeatureNotSupportedError) as exc:
        raise VectorExtensionMissingError(
            _missing_hint("the server has no pgvector installed (install it on the server)")
        ) from exc
    logger.info("created the vector extension")


# --- opening -------------------------------------------------------------------------


async def open_connection(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Any:
    """One connection to ``url`` (no codec), with connection errors typed."""
    try:
        return await asyncpg.connect(url, timeout=connect_timeout)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise connect_error(exc, url) from None


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector_codec(conn)


async def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = DEFAULT_POOL_MAX,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Pool:
    """A pool of connections to ``url``, each with the ``vector`` codec registered.

    The extension must exist (the schema step creates it: :mod:`.schema`).
    """
    if not 1 <= min_size <= max_size:
        raise ValueError("pool sizes need 1 <= min_size <= max_size")
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            init=_init_connection,
            server_settings=SERVER_SETTINGS,
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise connect_error(exc, url) from None
    logger.debug("postgres pool opened")
    return pool
