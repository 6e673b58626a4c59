"""Fixtures: a SemanticCore on every engine (the ``engine`` fixture: a real SQLite file,
a real PostgreSQL database, or memory), talking to the in-process emulator through the
real google-genai SDK, and helpers to drive a supervisor quickly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from asemantic import (
    CoreConfig,
    GoogleKeyring,
    JobStatus,
    SemanticCore,
)
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing.emulator import GeminiEmulator
from tests.support import CoreOpener, Databases, fast_supervisor
from tests.support import corpus as corpus  # shared with this suite's tests
from tests.support import databases as databases
from tests.support import engine as engine
from tests.support import engine_server as engine_server
from tests.support import eventually as eventually  # shared with this suite's tests
from tests.support import vector_counts as vector_counts  # shared with this suite's tests

DEFAULT_KEY = "sup-default-key-7f3a91"
BATCH_KEY = "sup-batch-key-c04e28"

OpenCore = Callable[..., Awaitable[SemanticCore]]


fast = fast_supervisor


@pytest.fixture
def emulator() -> GeminiEmulator:
    return GeminiEmulator()


@pytest.fixture
def keys() -> GoogleKeyring:
    return GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)


@pytest.fixture
async def open_core(
    db_path: Path, keys: GoogleKeyring, emulator: GeminiEmulator, databases: Databases
) -> AsyncIterator[OpenCore]:
    """Open cores on ``db_path`` (or another path naming another database of the test's
    engine); all are closed after the test."""
    opener = CoreOpener(
        databases=databases,
        db_path=db_path,
        keys=keys,
        emulator=emulator,
        config=CoreConfig(space=EmbeddingSpace(dimensions=768)),
        retry=RetryConfig(attempts=2, initial_delay=0.001, max_delay=0.005, timeout=10.0),
    )
    yield opener
    await opener.aclose()


async def ingest(core: SemanticCore, n: int, *, start: int = 0) -> None:
    for source, text in corpus(start + n)[start:]:
        await core.ingest(text, source=source, mode="async")


async def job_statuses(core: SemanticCore) -> list[JobStatus]:
    return [job.status for job in await core.batch_jobs.jobs()]


async def lease_row(core: SemanticCore) -> tuple[str, float] | None:
    """Who holds the supervisor lease and until when (read through the port)."""
    lease = await core.batch_jobs.current_lease()
    return (lease.owner, lease.expires_at) if lease is not None else None


async def keep_completing(emulator: GeminiEmulator, *, every: float = 0.005) -> None:
    """Finish every remote job as soon as it exists (run in a helper task)."""
    while True:
        emulator.complete_all()
        await anyio.sleep(every)
