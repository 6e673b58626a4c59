"""Choosing a driver that can load sqlite-vec, and what a connection looks like."""

from __future__ import annotations

import sqlite3
import types
from pathlib import Path

import pytest
import sqlite_vec

from asemantic.adapters.sqlite.connection import (
    Driver,
    can_load_extensions,
    enable_wal,
    open_connection,
    select_driver,
)
from asemantic.errors import ExtensionLoadingUnavailableError, StoreError


def _fake(name: str, *, loads: bool) -> types.ModuleType:
    module = types.ModuleType(name)

    class Connection:
        pass

    if loads:
        Connection.enable_load_extension = lambda self, on: None  # type: ignore[attr-defined]
    module.Connection = Connection  # type: ignore[attr-defined]
    return module


def test_stdlib_is_preferred_when_it_can_load_extensions() -> None:
    modules = {"sqlite3": _fake("sqlite3", loads=True), "sqlean": _fake("sqlean", loads=True)}
    chosen = select_driver(importer=modules.get)
    assert chosen.name == "sqlite3"
    assert chosen.module is modules["sqlite3"]


def test_sqlean_when_stdlib_cannot_load_extensions() -> None:
    modules = {"sqlite3": _fake("sqlite3", loads=False), "sqlean": _fake("sqlean", loads=True)}
    assert select_driver(importer=modules.get).name == "sqlean"


def test_actionable_error_when_neither_can() -> None:
    modules = {"sqlite3": _fake("sqlite3", loads=False)}  # sqlean not installed
    with pytest.raises(ExtensionLoadingUnavailableError) as info:
        select_driver(importer=modules.get)
    message = str(info.value)
    assert "pip install sqlean.py" in message
    assert "enable_load_extension" in message


def test_real_choice_on_this_python() -> None:
    chosen = select_driver()
    expected = "sqlite3" if can_load_extensions(sqlite3) else "sqlean"
    assert chosen.name == expected
    assert can_load_extensions(chosen.module)


async def test_connection_pragmas_and_sqlite_vec(tmp_path: Path) -> None:
    conn = await open_connection(tmp_path / "x.db", busy_timeout_ms=1234)
    try:
        assert list(await conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
        assert list(await conn.execute_fetchall("PRAGMA busy_timeout")) == [(1234,)]
        assert next(iter(await conn.execute_fetchall("PRAGMA cache_size")))[0] < 0
        rows = list(await conn.execute_fetchall("SELECT vec_version()"))
        assert str(rows[0][0]).startswith("v")
        assert conn.isolation_level is None
        await enable_wal(conn)
        assert list(await conn.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
        assert list(await conn.execute_fetchall("PRAGMA synchronous")) == [(1,)]
    finally:
        await conn.close()


async def test_extension_loading_is_switched_off_after_load(tmp_path: Path) -> None:
    chosen = select_driver()
    conn = await open_connection(tmp_path / "x.db", driver=chosen)
    try:
        with pytest.raises(chosen.error, match="not authorized"):
            await conn.load_extension(sqlite_vec.loadable_path())
        with pytest.raises(chosen.error):
            await conn.execute_fetchall("SELECT load_extension(?)", (sqlite_vec.loadable_path(),))
    finally:
        await conn.close()


async def test_query_only_connection_refuses_writes(tmp_path: Path) -> None:
    conn = await open_connection(tmp_path / "x.db", query_only=True)
    try:
        with pytest.raises(select_driver().error, match="readonly"):
            await conn.execute("CREATE TABLE t (x)")
    finally:
        await conn.close()


async def test_failed_sqlite_vec_load_is_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_vec, "loadable_path", lambda: str(tmp_path / "nope"))
    with pytest.raises(ExtensionLoadingUnavailableError, match="could not load sqlite-vec"):
        await open_connection(tmp_path / "x.db")


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        await open_connection(tmp_path / "missing-dir" / "x.db")


async def test_negative_busy_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout"):
        await open_connection(tmp_path / "x.db", busy_timeout_ms=-1)


@pytest.mark.skipif(
    not can_load_extensions(sqlite3), reason="this Python's sqlite3 cannot load extensions"
)
async def test_stdlib_driver_path(tmp_path: Path) -> None:
    stdlib = Driver(name="sqlite3", module=sqlite3)
    conn = await open_connection(tmp_path / "x.db", driver=stdlib)
    try:
        rows = list(await conn.execute_fetchall("SELECT vec_version()"))
        assert str(rows[0][0]).startswith("v")
        with pytest.raises(sqlite3.OperationalError):
            await conn.load_extension(sqlite_vec.loadable_path())
    finally:
        await conn.close()


async def test_sqlean_driver_path(tmp_path: Path) -> None:
    sqlean = pytest.importorskip("sqlean")
    conn = await open_connection(tmp_path / "x.db", driver=Driver(name="sqlean", module=sqlean))
    try:
        rows = list(await conn.execute_fetchall("SELECT vec_version()"))
        assert str(rows[0][0]).startswith("v")
    finally:
        await conn.close()
