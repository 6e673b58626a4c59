"""Robustness: the contracts under concurrency, local faults, bad input and key leaks.

Every core here talks to the Gemini emulator through the real google-genai SDK (in
process, or over loopback where the real HTTP stack matters) and keeps its data on the
test's engine (the ``engine`` fixture: a real SQLite file, a real PostgreSQL database, or
memory); the checks read through the ports. Tests about SQLite itself are pinned to it
(:func:`tests.support.sqlite_only`). The two keys are distinctive canaries, so any test
may scan for them.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from asemantic import (
    CoreConfig,
    GoogleKeyring,
    JobStatus,
    RetryConfig,
    SemanticCore,
)
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.emulator.rpc import api_key_invalid
from asemantic.testing.emulator.wire import EmulatorResponse
from tests.support import CoreOpener, Databases
from tests.support import corpus as corpus  # shared with this suite's tests
from tests.support import databases as databases
from tests.support import engine as engine
from tests.support import engine_server as engine_server
from tests.support import eventually as wait_until
from tests.support import vector_counts as vector_counts  # shared with this suite's tests

DEFAULT_KEY = "AIzaDEFAULT-LEAK-CANARY-1"
BATCH_KEY = "AIzaBATCH-LEAK-CANARY-2"
SPACE = EmbeddingSpace(dimensions=768)
TABLES = (
    "documents",
    "chunks",
    "vectors",
    "batch_jobs",
    "batch_job_transitions",
    "usage_texts",
    "usage_tokens",
    "supervisor_lease",
)
"""What :func:`table_counts` counts (through the ports, on every engine)."""

OpenCore = Callable[..., Awaitable[SemanticCore]]


class RevocableEmulator(GeminiEmulator):
    """The emulator, plus keys that can be revoked (and restored) between two calls.

    The emulator only takes a fixed ``api_keys`` list at construction; a revoked key
    gets the same 400 API_KEY_INVALID answer an unknown key gets.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._revoked: set[str] = set()

    def revoke(self, key: str) -> None:
        self._revoked.add(self.key_fingerprint(key))

    def restore(self, key: str) -> None:
        self._revoked.discard(self.key_fingerprint(key))

    def _authorise(self, key: str | None) -> EmulatorResponse | None:
        if key and self.key_fingerprint(key) in self._revoked:
            return api_key_invalid().response()
        return super()._authorise(key)


def fast_retry(**overrides: Any) -> RetryConfig:
    values: dict[str, Any] = {
        "attempts": 3,
        "initial_delay": 0.001,
        "max_delay": 0.01,
        "timeout": 10.0,
    }
    values.update(overrides)
    return RetryConfig(**values)


@pytest.fixture
def emulator() -> RevocableEmulator:
    return RevocableEmulator()


@pytest.fixture
def keys() -> GoogleKeyring:
    return GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)


@pytest.fixture
async def open_core(
    db_path: Path, keys: GoogleKeyring, emulator: RevocableEmulator, databases: Databases
) -> AsyncIterator[OpenCore]:
    """Open cores (on ``db_path`` by default: a database of the test's engine); all are
    closed after the test."""
    opener = CoreOpener(
        databases=databases,
        db_path=db_path,
        keys=keys,
        emulator=emulator,
        # No grace after a create of unknown outcome: in process, a create the caller
        # gave up on never lands later (test_slow_create.py covers the grace).
        config=CoreConfig(space=SPACE, create_grace_seconds=0.0),
        retry=fast_retry(),
    )
    yield opener
    await opener.aclose()


async def table_counts(core: SemanticCore) -> dict[str, int]:
    """Rows of each kind in the database (:data:`TABLES`), read through the ports."""
    stats = await core.store.stats()
    jobs = await core.batch_jobs.jobs()
    moves = [len(await core.batch_jobs.transitions(job.job_id)) for job in jobs]
    usage = (await core.store.usage()).values()
    return {
        "documents": stats.documents,
        "chunks": len(await core.store.chunk_records()),
        "vectors": len(await core.store.vector_rows()),
        "batch_jobs": len(jobs),
        "batch_job_transitions": sum(moves),
        "usage_texts": sum(total.texts for total in usage),
        "usage_tokens": sum(total.tokens for total in usage),
        "supervisor_lease": int(await core.batch_jobs.current_lease() is not None),
    }


async def count(core: SemanticCore, table: str) -> int:
    """One of :func:`table_counts`."""
    return (await table_counts(core))[table]


async def batch_texts_applied(core: SemanticCore) -> int:
    """Texts the usage ledger says batch results embedded (each applied result once)."""
    return (await core.store.usage())["batch"].texts


async def drain(
    core: SemanticCore, emulator: GeminiEmulator, *, rounds: int = 12, pause: float = 0.0
) -> None:
    """Drive the batch pipeline by hand until nothing is pending, active or uncleaned."""
    manager = core.batch_manager
    for round_ in range(rounds):
        if round_ and pause:
            await anyio.sleep(pause)
        await manager.reconcile()
        await manager.flush_queue(min_size=1)
        emulator.complete_all()
        await manager.sync_status()
        counts = await core.store.count_chunks_by_status()
        if not counts["PENDING"] and not await core.batch_jobs.jobs(uncleaned=True):
            return
    raise AssertionError("the batch pipeline did not settle")


async def check_contracts(core: SemanticCore, emulator: GeminiEmulator | None = None) -> None:
    """Contracts 1, 2 and 4 on the file as it is now (and 3, given the emulator)."""
    assert await core.store.integrity_check() == "ok"
    ready = (await core.store.count_chunks_by_status())["READY"]
    assert await vector_counts(core) == (ready, ready)
    finished = {
        job.job_id for job in await core.batch_jobs.jobs((JobStatus.COMPLETED, JobStatus.FAILED))
    }
    chunks = await core.store.chunk_records()
    stuck = [c for c in chunks if c.status == "PENDING" and c.job_id in finished]
    assert not stuck, "PENDING chunks inside a finished job"
    failed = [c for c in chunks if c.status == "FAILED" and not c.error_message]
    assert not failed, "a FAILED chunk without a reason"
    if emulator is not None:
        assert not emulator.remote_leftovers()


def successful_creates(emulator: GeminiEmulator) -> int:
    return sum(1 for r in emulator.requests_to("batches.create") if r.status == 200)


# Slower machines meet these suites' subprocesses: a longer bound by default.
eventually = functools.partial(wait_until, within=20.0, every=0.01)


async def keep_completing(emulator: GeminiEmulator, *, every: float = 0.005) -> None:
    """Finish every remote job as soon as it exists (run in a helper task)."""
    while True:
        emulator.complete_all()
        await anyio.sleep(every)
