"""Helpers shared by several test suites.

Engines: a behaviour suite's ``engine`` fixture (:func:`engine`, parametrized over
:data:`ENGINES`) names the engine its tests run on, and :class:`Databases` makes that
engine's databases for one test: a SQLite file, an in-memory database, or a fresh
PostgreSQL database on the session's server. A test names a database by a path (the
suite's ``db_path``, or another one); on SQLite that path is the file, on the other
engines it is only the database's name in the test. So the same test opens, reopens
and shares a database on every engine. The ``postgres`` parameter is collected on every
branch: it runs when ``asemantic.adapters.postgres`` is importable, and is skipped
with the reason :data:`NO_POSTGRES` when it is not.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from asemantic import (
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    RetryConfig,
    SemanticCore,
    SupervisorConfig,
)
from asemantic.adapters.factory import StoreOptions, open_store
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import StoreClosedError
from asemantic.ports import JobStore, Store
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.postgres import LocalPostgres

__all__ = [
    "DURABLE_ENGINES",
    "ENGINES",
    "NO_POSTGRES",
    "CoreOpener",
    "Databases",
    "StoreWrap",
    "corpus",
    "databases",
    "engine",
    "engine_params",
    "engine_server",
    "eventually",
    "fast_supervisor",
    "postgres_on_branch",
    "replace_job_methods",
    "sqlite_only",
    "sqlite_of",
    "vector_counts",
]

ENGINES = ("memory", "sqlite", "postgres")
"""Every Store implementation; engine-neutral behaviour tests run on each."""
DURABLE_ENGINES = ("sqlite", "postgres")
"""The engines whose data outlive the process (crash tests run on these)."""
NO_POSTGRES = "postgres engine not on this branch"
NOT_DURABLE = "the memory engine is not durable: nothing of it survives its process"


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """Mark a test that is about SQLite itself (its file, locks, transactions or
    internals; ``reason`` says which): it runs on the SQLite engine alone, by pinning
    the ``engine`` fixture to ``"sqlite"``."""
    if not reason:
        raise ValueError("say why the test is about SQLite")
    return pytest.mark.parametrize("engine", ["sqlite"])


def postgres_on_branch() -> bool:
    """Whether the PostgreSQL engine (``asemantic.adapters.postgres``) is importable."""
    try:
        return importlib.util.find_spec("asemantic.adapters.postgres") is not None
    except ImportError:
        return False


def engine_params(
    engines: Iterable[str] = ENGINES, *, skip: Mapping[str, str] | None = None
) -> list[Any]:
    """``pytest.param`` per engine: ``postgres`` skipped (:data:`NO_POSTGRES`) when its
    engine is not importable, and each engine in ``skip`` skipped with its reason."""
    skip = dict(skip or {})
    if not postgres_on_branch():
        skip.setdefault("postgres", NO_POSTGRES)
    marks = {name: pytest.mark.skip(reason=reason) for name, reason in skip.items()}
    out: list[Any] = []
    for name in engines:
        out.append(pytest.param(name, id=name, marks=[marks[name]] if name in marks else []))
    return out


@pytest.fixture(params=engine_params())
def engine(request: pytest.FixtureRequest) -> str:
    """The engine a test runs on (import it into a suite's conftest to parametrize it;
    :func:`sqlite_only` pins it to SQLite for a test about SQLite itself)."""
    return cast(str, request.param)


class _MemoryView:
    """One core's view of a shared in-memory database (a store or its job store).

    Closing the core closes its view only: later calls through it raise
    :class:`~asemantic.errors.StoreClosedError`, as on a closed store, and the database
    stays for the next core opened on the same name (a "reopen" on memory).
    """

    def __init__(self, inner: Any, closed: list[bool] | None = None) -> None:
        self.inner = inner
        self._closed = closed if closed is not None else [False]
        self._of_store = closed is None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name == "jobs" and self._of_store:  # the store's job store: a view too
            return _MemoryView(value, self._closed)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            if self._closed[0]:
                raise StoreClosedError("the store is closed")
            return value(*args, **kwargs)

        return call

    async def aclose(self) -> None:
        self._closed[0] = True


class Databases:
    """The databases of one test on one engine, by name (a path); dropped afterwards.

    ``target(path)`` is what ``SemanticCore.open`` (or ``--db``) takes for the database
    ``path`` names: the path itself on SQLite, a PostgreSQL URL of a database made for
    it, or an in-memory store shared by every core opened on that name.
    """

    def __init__(self, engine: str, server: LocalPostgres | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}")
        if engine == "postgres" and server is None:
            raise ValueError("the postgres engine needs a server")
        self.engine = engine
        self._server = server
        self._urls: dict[Path, str] = {}
        self._memory: dict[Path, Store] = {}

    @property
    def durable(self) -> bool:
        return self.engine in DURABLE_ENGINES

    async def url(self, path: Path) -> str:
        """The URL (or file path) of the durable database ``path`` names."""
        if self.engine == "sqlite":
            return str(path)
        if self.engine != "postgres" or self._server is None:
            raise ValueError(f"the {self.engine} engine has no URL")
        if path not in self._urls:
            self._urls[path] = await self._server.create_database()
        return self._urls[path]

    async def target(self, path: Path, *, space: EmbeddingSpace | None) -> Path | str | Store:
        if self.engine == "sqlite":
            return path
        if self.engine == "postgres":
            return await self.url(path)
        if path not in self._memory:
            self._memory[path] = await open_store(":memory:", space=space)
        return cast(Store, _MemoryView(self._memory[path]))

    async def aclose(self) -> None:
        for store in self._memory.values():
            await store.aclose()
        self._memory.clear()
        if self._server is not None:
            for url in self._urls.values():
                await self._server.drop_database(url)
        self._urls.clear()


@pytest.fixture
def engine_server(engine: str, request: pytest.FixtureRequest) -> LocalPostgres | None:
    """The session's PostgreSQL server for a postgres test (started on first use), else None."""
    if engine != "postgres":
        return None
    return cast(LocalPostgres, request.getfixturevalue("postgres_server"))


@pytest.fixture
async def databases(engine: str, engine_server: LocalPostgres | None) -> Any:
    """This test's :class:`Databases` on its ``engine``, dropped after the test."""
    made = Databases(engine, engine_server)
    try:
        yield made
    finally:
        await made.aclose()


async def vector_counts(core: SemanticCore) -> tuple[int, int]:
    """Stored vector rows and distinct chunks among them (equal when none has two)."""
    rows = await core.store.vector_rows()
    return len(rows), len({chunk_id for chunk_id, _ in rows})


def sqlite_of(core: SemanticCore) -> SqliteStore:
    """The SQLite store behind ``core``, for tests that look at the file itself (tests
    about SQLite only: the others read through the ports)."""
    store = core.store
    while isinstance(store, _StoreWith | _MemoryView):  # a test double around the real store
        store = store.inner
    assert isinstance(store, SqliteStore), f"expected a SQLite engine, got {store!r}"
    return store


StoreWrap = Callable[[Store], Store]
"""Turns the store a test core opens into the store it runs on (a test double)."""


class _JobsWith:
    """A JobStore that delegates to ``inner``, except for the methods in ``replaced``."""

    def __init__(self, inner: JobStore, replaced: Mapping[str, Callable[..., Any]]) -> None:
        self._inner = inner
        self._replaced = replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced.get(name) or getattr(self._inner, name)


class _StoreWith:
    """A Store that delegates to ``inner`` but hands out ``jobs`` instead of its own."""

    def __init__(self, inner: Store, jobs: JobStore) -> None:
        self.inner = inner
        self.jobs = jobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def replace_job_methods(**replaced: Callable[..., Any]) -> StoreWrap:
    """A :data:`StoreWrap` whose job store runs ``replaced`` methods (each gets the real
    job store as its first argument) and delegates everything else."""

    def wrap(store: Store) -> Store:
        inner = store.jobs
        bound = {name: functools.partial(method, inner) for name, method in replaced.items()}
        return cast(Store, _StoreWith(store, cast(JobStore, _JobsWith(inner, bound))))

    return wrap


def fast_supervisor(**overrides: Any) -> SupervisorConfig:
    """A supervisor config that ticks every few milliseconds (for tests)."""
    values: dict[str, Any] = {
        "poll_interval": 0.01,
        "jitter": 0.2,
        "min_batch_size": 1,
        "max_wait": 0.0,
        "lease_ttl": 5.0,
        "pause_initial": 0.02,
        "pause_max": 0.1,
        "stop_timeout": 2.0,
    }
    values.update(overrides)
    return SupervisorConfig(**values)


class CoreOpener:
    """Opens :class:`SemanticCore`\\ s for one test and closes them all afterwards.

    Each suite's ``open_core`` fixture is one of these with the suite's defaults: the
    database path, keys, emulator (in process through the real SDK), core config and
    retry settings. A call may override any of them; ``base_url`` talks to a loopback
    server instead of the in-process transport, ``gemini`` replaces the settings whole.

    ``databases`` picks the engine (see :class:`Databases`; SQLite files when None): a
    path then names a database of that engine, and cores opened on the same path share
    it.
    """

    def __init__(
        self,
        *,
        db_path: Path,
        keys: GoogleKeyring,
        emulator: GeminiEmulator,
        config: CoreConfig,
        retry: RetryConfig,
        databases: Databases | None = None,
    ) -> None:
        self._db_path = db_path
        self._keys = keys
        self._emulator = emulator
        self._config = config
        self._retry = retry
        self._databases = databases or Databases("sqlite")
        self._opened: list[SemanticCore] = []

    @property
    def engine(self) -> str:
        return self._databases.engine

    async def target(self, path: Path | None = None) -> Path | str | Store:
        """What ``SemanticCore.open`` takes for the database ``path`` (default: the suite's)."""
        return await self._databases.target(path or self._db_path, space=self._config.space)

    async def __call__(
        self,
        path: Path | None = None,
        *,
        keyring: GoogleKeyring | None = None,
        server: GeminiEmulator | None = None,
        base_url: str | None = None,
        retry: RetryConfig | None = None,
        gemini: GeminiSettings | None = None,
        config: CoreConfig | None = None,
        wrap: StoreWrap | None = None,
    ) -> SemanticCore:
        """Open a core; with ``wrap``, on the store ``wrap`` makes of the real one."""
        target = server or self._emulator
        config = config or self._config
        where = await self._databases.target(path or self._db_path, space=config.space)
        if wrap is not None:
            options = StoreOptions(
                busy_timeout_ms=config.busy_timeout_ms, memory_index=config.memory_index
            )
            where = wrap(await open_store(where, space=config.space, options=options))
        core = await SemanticCore.open(
            where,
            keys=keyring or self._keys,
            config=config,
            gemini=gemini
            or GeminiSettings(
                base_url=base_url or target.base_url,
                transport=None if base_url else target.async_transport(),
                retry=retry or self._retry,
            ),
        )
        self._opened.append(core)
        return core

    async def aclose(self) -> None:
        """Close every core opened, newest first."""
        for core in reversed(self._opened):
            await core.aclose()


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, every: float = 0.005
) -> None:
    """Wait until ``check()`` (plain or awaitable) holds; the bound only stops a hung test."""
    with anyio.fail_after(within):
        while True:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome:
                return
            await anyio.sleep(every)


def corpus(
    n: int, *, start: int = 0, words: int = 24, prefix: str = "doc"
) -> list[tuple[str, str]]:
    """``n`` small distinct one-chunk documents (source, text), numbered from ``start``."""
    topics = ["invoice", "refund", "vacation", "certificate", "outage", "onboarding"]
    docs = []
    for i in range(start, start + n):
        topic = topics[i % len(topics)]
        body = " ".join(f"{topic} word{i}x{j}" for j in range(words // 2))
        docs.append((f"{prefix}-{i}", f"# {topic.title()} note {i}\n\n{body}\n"))
    return docs
