"""Helpers shared by several test suites."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import anyio

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
from asemantic.ports import JobStore, Store
from asemantic.testing.emulator import GeminiEmulator

__all__ = [
    "CoreOpener",
    "StoreWrap",
    "corpus",
    "eventually",
    "fast_supervisor",
    "replace_job_methods",
    "sqlite_of",
]


def sqlite_of(core: SemanticCore) -> SqliteStore:
    """The SQLite store behind ``core``, for tests that look at the file itself."""
    store = core.store
    while isinstance(store, _StoreWith):  # a test double around the real store
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
    """

    def __init__(
        self,
        *,
        db_path: Path,
        keys: GoogleKeyring,
        emulator: GeminiEmulator,
        config: CoreConfig,
        retry: RetryConfig,
    ) -> None:
        self._db_path = db_path
        self._keys = keys
        self._emulator = emulator
        self._config = config
        self._retry = retry
        self._opened: list[SemanticCore] = []

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
        where: Path | Store = path or self._db_path
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
