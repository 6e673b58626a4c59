"""A knowledge base with something in every table, built through the real pipeline.

``build_kb`` ingests online and in batch against the Gemini emulator (through the real
google-genai SDK) into a real SQLite file: READY, PENDING and FAILED chunks, a finished
and cleaned job, an active job still remote, a create-attempt mark, transitions and the
usage ledger of all three routes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asemantic import CoreConfig, GeminiSettings, GoogleKeyring, JobStatus, SemanticCore
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import Store
from asemantic.testing.emulator import GeminiEmulator
from tests.support import corpus

DEFAULT_KEY = "transfer-default-key-0001"
BATCH_KEY = "transfer-batch-key-0002"
SPACE = EmbeddingSpace(dimensions=768)

OpenCore = Callable[..., Awaitable[SemanticCore]]


@pytest.fixture
def emulator() -> GeminiEmulator:
    return GeminiEmulator()


async def open_core_on(
    emulator: GeminiEmulator, target: Path | str | Store, *, dimensions: int = 768
) -> SemanticCore:
    """A core on ``target`` talking to ``emulator`` in process (the real SDK)."""
    return await SemanticCore.open(
        target,
        keys=GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY),
        config=CoreConfig(space=EmbeddingSpace(dimensions=dimensions), create_grace_seconds=0.0),
        gemini=GeminiSettings(
            base_url=emulator.base_url,
            transport=emulator.async_transport(),
            retry=RetryConfig(attempts=3, initial_delay=0.001, max_delay=0.01, timeout=10.0),
        ),
    )


@pytest.fixture
async def open_core(emulator: GeminiEmulator) -> AsyncIterator[OpenCore]:
    opened: list[SemanticCore] = []

    async def open_(target: Path | str | Store, *, dimensions: int = 768) -> SemanticCore:
        core = await open_core_on(emulator, target, dimensions=dimensions)
        opened.append(core)
        return core

    yield open_
    for core in reversed(opened):
        await core.aclose()


async def fill(core: SemanticCore, emulator: GeminiEmulator, *, documents: int = 12) -> None:
    """Something in every table of ``core``'s database."""
    for i, (source, text) in enumerate(corpus(documents)):
        await core.ingest(text, source=source, mode="sync", metadata={"n": i, "team": "ops"})
    # A finished, cleaned batch job.
    for source, text in corpus(4, start=100, prefix="batch"):
        await core.ingest(text, source=source, mode="async", title=f"Batch {source}")
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    # An active job, still remote, with a create-attempt mark.
    for source, text in corpus(3, start=200, prefix="active"):
        await core.ingest(text, source=source, mode="async")
    [active] = await core.batch_manager.flush_queue(min_size=1)
    await core.batch_jobs.mark_create_attempt(active, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    # Queued chunks, a FAILED chunk and a query.
    for source, text in corpus(2, start=300, prefix="queued"):
        await core.ingest(text, source=source, mode="async")
    await core.search("refund", k=3)
    jobs = await core.batch_jobs.jobs()
    assert {job.status for job in jobs} == {JobStatus.COMPLETED, JobStatus.SUBMITTED}


async def fail_one_chunk(path: Path) -> None:
    """Mark one queued chunk FAILED (the pipeline's retry budget would, in time)."""
    await sql(
        path,
        "UPDATE chunks SET embedding_status = 'FAILED', error_message = 'too many attempts', "
        "attempts = 3 WHERE id = (SELECT MAX(id) FROM chunks WHERE embedding_status = "
        "'PENDING' AND batch_job_id IS NULL)",
    )


async def sql(path: Path, *statements: str) -> None:
    """Run write statements in one transaction of a real store (sqlite-vec loaded)."""
    async with await SqliteStore.open(path) as store, store.transaction() as conn:
        for statement in statements:
            await conn.execute(statement)


async def build_source(path: Path, emulator: GeminiEmulator) -> Path:
    """A SQLite knowledge base with rows in every table, closed."""
    core = await open_core_on(emulator, path)
    try:
        await fill(core, emulator)
    finally:
        await core.aclose()
    await fail_one_chunk(path)
    return path


@pytest.fixture
def source_kb(tmp_path: Path, emulator: GeminiEmulator) -> Path:
    """A SQLite knowledge base with rows in every table (built in its own event loop,
    so that sync tests, such as the CLI's, can use it too)."""
    return asyncio.run(build_source(tmp_path / "source.db", emulator))


def table_rows(path: Path, table: str, columns: str = "*") -> list[tuple[object, ...]]:
    """Every row of a plain table, by key (read with the stdlib, no extension)."""
    with sqlite3.connect(path) as conn:
        return [tuple(row) for row in conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1")]
