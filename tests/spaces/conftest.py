"""The embedding-space suite: several spaces per knowledge base and migrating between
them, through the real google-genai SDK and the emulator, on every engine that holds
several spaces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from asemantic import CoreConfig, GoogleKeyring, SemanticCore
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing.emulator import GeminiEmulator
from tests.support import CoreOpener, Databases
from tests.support import databases as databases
from tests.support import engine as engine
from tests.support import engine_server as engine_server

OpenCore = Callable[..., Awaitable[SemanticCore]]

OLD = EmbeddingSpace(dimensions=768)
NEW = EmbeddingSpace(dimensions=1536)


@pytest.fixture
def emulator() -> GeminiEmulator:
    return GeminiEmulator()


@pytest.fixture
def keys() -> GoogleKeyring:
    return GoogleKeyring("test-default-key-0001", batch_key="test-batch-key-0002")


@pytest.fixture
async def open_core(
    tmp_path: Path, keys: GoogleKeyring, emulator: GeminiEmulator, databases: Databases
) -> AsyncIterator[OpenCore]:
    opener = CoreOpener(
        databases=databases,
        db_path=tmp_path / "kb.db",
        keys=keys,
        emulator=emulator,
        config=CoreConfig(space=OLD, create_grace_seconds=0.0),
        retry=RetryConfig(attempts=4, initial_delay=0.001, max_delay=0.01, timeout=10.0),
    )
    yield opener
    await opener.aclose()
