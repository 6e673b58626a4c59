"""The batch pipeline against the Gemini emulator, through the real google-genai SDK,
on every engine (the ``engine`` fixture)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from asemantic import CoreConfig, GeminiSettings, GoogleKeyring, SemanticCore
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing.emulator import GeminiEmulator
from tests.support import CoreOpener, Databases
from tests.support import corpus as _corpus
from tests.support import databases as databases
from tests.support import engine as engine
from tests.support import engine_server as engine_server

DEFAULT_KEY = "test-default-key-0001"
BATCH_KEY = "test-batch-key-0002"

OpenCore = Callable[..., Awaitable[SemanticCore]]


@pytest.fixture
def emulator() -> GeminiEmulator:
    return GeminiEmulator()


@pytest.fixture
def keys() -> GoogleKeyring:
    return GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)


@pytest.fixture
def settings(emulator: GeminiEmulator) -> GeminiSettings:
    return GeminiSettings(
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RetryConfig(attempts=4, initial_delay=0.001, max_delay=0.01, timeout=10.0),
    )


@pytest.fixture
async def open_core(
    tmp_path: Path,
    keys: GoogleKeyring,
    emulator: GeminiEmulator,
    settings: GeminiSettings,
    databases: Databases,
) -> AsyncIterator[OpenCore]:
    opener = CoreOpener(
        databases=databases,
        db_path=tmp_path / "kb.db",
        keys=keys,
        emulator=emulator,
        config=CoreConfig(space=EmbeddingSpace(dimensions=768), create_grace_seconds=0.0),
        retry=settings.retry,
    )
    yield opener
    await opener.aclose()


corpus = functools.partial(_corpus, words=40)
"""This suite's documents: one paragraph of 40 words each."""
