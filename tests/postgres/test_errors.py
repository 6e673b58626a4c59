"""Typed errors of the PostgreSQL engine: each failure to open says what it is and what
to do, and never shows a password."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from asemantic.adapters.factory import open_store
from asemantic.adapters.postgres.connection import connect_error, store_error
from asemantic.adapters.postgres.schema import CURRENT_VERSION, table_exists
from asemantic.adapters.postgres.store import PostgresStore
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import (
    EmbeddingSpaceMismatchError,
    SchemaVersionError,
    StoreAuthenticationError,
    StoreBusyError,
    StoreConnectionError,
    StoreError,
    VectorExtensionMissingError,
)
from asemantic.testing.postgres import LocalPostgres

SPACE = EmbeddingSpace()


def _as_user(url: str, user: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = user if password is None else f"{user}:{password}"
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_closed_port_is_a_connection_error_with_a_hint() -> None:
    url = f"postgresql://kb:hunter2secret@127.0.0.1:{_closed_port()}/kb"
    with pytest.raises(StoreConnectionError) as caught:
        await open_store(url, space=SPACE)
    message = str(caught.value)
    assert "server is running" in message
    assert "hunter2secret" not in message
    assert "kb:***@127.0.0.1" in message


async def test_a_missing_socket_is_a_connection_error(tmp_path: Path) -> None:
    url = f"postgresql://kb@/kb?host={tmp_path / 'nowhere'}"
    with pytest.raises(StoreConnectionError, match="cannot connect"):
        await PostgresStore.open(url, space=SPACE)


async def test_an_unknown_role_is_an_authentication_error(postgres_url: str) -> None:
    url = _as_user(postgres_url, f"nobody_{secrets.token_hex(4)}", "pa55word-never-shown")
    with pytest.raises(StoreAuthenticationError) as caught:
        await PostgresStore.open(url, space=SPACE)
    assert "pa55word-never-shown" not in str(caught.value)
    assert "pa55word-never-shown" not in repr(caught.value)
    assert "password" in str(caught.value)  # the hint names what to check


def test_a_wrong_password_is_an_authentication_error_without_the_password() -> None:
    url = "postgresql://kb:s3cr3t-pw@db.example:5432/kb"
    refused = asyncpg.InvalidPasswordError('password authentication failed for user "kb"')
    error = connect_error(refused, url)
    assert isinstance(error, StoreAuthenticationError)
    assert "s3cr3t-pw" not in str(error)
    assert "kb:***@db.example:5432" in str(error)
    echoed = asyncpg.InvalidPasswordError("bad password s3cr3t-pw")  # a server that echoes it
    assert "s3cr3t-pw" not in str(connect_error(echoed, url))


def test_lock_and_serialization_failures_are_busy_errors() -> None:
    for exc in (
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.LockNotAvailableError("could not obtain lock"),
    ):
        assert isinstance(store_error(exc), StoreBusyError)
    assert type(store_error(asyncpg.UniqueViolationError("dup"))) is StoreError


async def test_a_missing_database_says_to_create_it(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/no_such_db_here", parts.query, ""))
    with pytest.raises(StoreError, match="does not exist"):
        await PostgresStore.open(url, space=SPACE)


async def test_vector_missing_and_not_creatable_is_a_typed_error(
    postgres_server: LocalPostgres,
) -> None:
    name = f"asemantic_novector_{secrets.token_hex(4)}"
    role = f"asemantic_plain_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT CONNECT, CREATE ON DATABASE "{name}" TO "{role}"')
    finally:
        await admin.close()
    url = postgres_server.url(name)
    try:
        owner = await asyncpg.connect(url)
        try:
            await owner.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        finally:
            await owner.close()
        with pytest.raises(VectorExtensionMissingError, match="CREATE EXTENSION vector"):
            await PostgresStore.open(_as_user(url, role), space=SPACE)
        check = await asyncpg.connect(url)
        try:  # refused in one transaction: nothing was left behind
            assert not await table_exists(check, "schema_version")
            assert not await table_exists(check, "documents")
        finally:
            await check.close()
        # An owner who may create it gets a working database.
        store = await PostgresStore.open(url, space=SPACE)
        await store.aclose()
    finally:
        await postgres_server.drop_database(url)
        admin = await asyncpg.connect(postgres_server.admin_url)
        try:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


async def test_a_newer_schema_is_refused_untouched(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, space=SPACE)
    await store.aclose()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("UPDATE schema_version SET version = $1", CURRENT_VERSION + 1)
        with pytest.raises(SchemaVersionError, match="upgrade asemantic"):
            await PostgresStore.open(postgres_url, space=SPACE)
        assert await conn.fetchval("SELECT version FROM schema_version") == CURRENT_VERSION + 1
    finally:
        await conn.close()


async def test_another_space_is_refused(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, space=SPACE)
    await store.aclose()
    other = EmbeddingSpace(dimensions=3072)
    with pytest.raises(EmbeddingSpaceMismatchError, match="never mix"):
        await PostgresStore.open(postgres_url, space=other)
    reopened = await PostgresStore.open(postgres_url)  # no space asked: the recorded one
    try:
        assert reopened.space == SPACE
    finally:
        await reopened.aclose()


def test_the_repr_hides_the_password() -> None:
    url = "postgresql://kb:never-in-a-repr@db.example:5432/kb"
    store = PostgresStore(url=url, pool=None, space=SPACE, database_id="0" * 32)
    assert "never-in-a-repr" not in repr(store)
    assert "kb:***@db.example:5432" in repr(store)
