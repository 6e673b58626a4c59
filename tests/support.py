"""Helpers shared by several test suites."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from asemantic import (
    CoreConfig,
    GeminiSettings,
    GoogleKeyring,
    RetryConfig,
    SemanticCore,
    SupervisorConfig,
)
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.testing.emulator import GeminiEmulator

__all__ = ["CoreOpener", "corpus", "eventually", "fast_supervisor", "sqlite_of"]


def sqlite_of(core: SemanticCore) -> SqliteStore:
    """The SQLite store behind ``core``, for tests that look at the file itself."""
    store = core.store
    assert isinstance(store, SqliteStore), f"expected a SQLite engine, got {store!r}"
    return store


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
    ) -> SemanticCore:
        target = server or self._emulator
        core = await SemanticCore.open(
            path or self._db_path,
            keys=keyring or self._keys,
            config=config or self._config,
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
