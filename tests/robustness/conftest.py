"""Robustness: the contracts under concurrency, local faults, bad input and key leaks.

Every core here talks to the Gemini emulator through the real google-genai SDK (in
process, or over loopback where the real HTTP stack matters) and keeps its data in a
real SQLite file. The two keys are distinctive canaries, so any test may scan for them.
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
from tests.support import CoreOpener, sqlite_of
from tests.support import corpus as corpus  # shared with this suite's tests
from tests.support import eventually as wait_until

DEFAULT_KEY = "AIzaDEFAULT-LEAK-CANARY-1"
BATCH_KEY = "AIzaBATCH-LEAK-CANARY-2"
SPACE = EmbeddingSpace(dimensions=768)
TABLES = (
    "documents",
    "chunks",
    "vec_chunks",
    "batch_jobs",
    "batch_job_transitions",
    "usage_ledger",
    "supervisor_lease",
)

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
    db_path: Path, keys: GoogleKeyring, emulator: RevocableEmulator
) -> AsyncIterator[OpenCore]:
    """Open cores (on ``db_path`` by default); all are closed after the test."""
    opener = CoreOpener(
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


async def count(core: SemanticCore, table: str) -> int:
    return int((await sqlite_of(core).fetchall(f"SELECT COUNT(*) FROM {table}"))[0][0])


async def table_counts(core: SemanticCore) -> dict[str, int]:
    return {table: await count(core, table) for table in TABLES}


async def vector_counts(core: SemanticCore) -> tuple[int, int]:
    rows = await sqlite_of(core).fetchall("SELECT COUNT(*), COUNT(DISTINCT rowid) FROM vec_chunks")
    return int(rows[0][0]), int(rows[0][1])


async def batch_texts_applied(core: SemanticCore) -> int:
    """Texts the usage ledger says batch results embedded (each applied result once)."""
    rows = await sqlite_of(core).fetchall(
        "SELECT COALESCE(SUM(texts), 0) FROM usage_ledger WHERE route = 'batch'"
    )
    return int(rows[0][0])


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
    finished = (JobStatus.COMPLETED.value, JobStatus.FAILED.value)
    stuck = await sqlite_of(core).fetchall(
        "SELECT COUNT(*) FROM chunks c JOIN batch_jobs j ON j.id = c.batch_job_id "
        "WHERE c.embedding_status = 'PENDING' AND j.status IN (?, ?)",
        finished,
    )
    assert stuck[0][0] == 0, "PENDING chunks inside a finished job"
    failed = await sqlite_of(core).fetchall(
        "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'FAILED' "
        "AND (error_message IS NULL OR error_message = '')"
    )
    assert failed[0][0] == 0, "a FAILED chunk without a reason"
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
