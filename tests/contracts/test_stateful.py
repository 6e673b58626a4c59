"""Contracts 1-3 under random interleavings: a Hypothesis state machine.

Rules ingest (async), edit and delete documents, flush, sync, reconcile, clean up,
move the emulator's clock (by up to two days: result files expire), finish remote
jobs, inject faults (429/5xx on any endpoint, lost create responses, jobs that end
FAILED/CANCELLED/EXPIRED, per-line errors, malformed result files) and close and
reopen the core. After every step the
contracts are checked; at the end the faults are cleared, the core reopened and the
pipeline run to the end, which must leave every chunk READY or FAILED with a reason
and nothing remotely.

Each rule runs its coroutine to completion on the machine's own event loop (an
:class:`asyncio.Runner` per example). ``ASEMANTIC_STATEFUL_EXAMPLES`` and
``ASEMANTIC_STATEFUL_STEPS`` set the size (default 30 examples of 40 steps; on
PostgreSQL ``ASEMANTIC_STATEFUL_EXAMPLES_POSTGRES``, default 15, since each example
also creates a database).

The machine runs on each durable engine: a SQLite file per example
(:class:`TestBatchPipeline`), a PostgreSQL database per example on the session's
server (:class:`TestBatchPipelinePostgres`); the memory engine is not durable, so its
case (``test_batch_pipeline_memory``) is collected and skipped, saying so.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from asemantic import JobStatus, ProviderError, SemanticCore
from asemantic.testing import LexicalEmbedder
from asemantic.testing.emulator import Fault, GeminiEmulator, JobFault, LineFault, ResultCorruption
from asemantic.testing.postgres import LocalPostgres
from tests.contracts import harness
from tests.support import NO_POSTGRES, NOT_DURABLE, postgres_on_branch

EXAMPLES = int(os.environ.get("ASEMANTIC_STATEFUL_EXAMPLES", "30"))
POSTGRES_EXAMPLES = int(os.environ.get("ASEMANTIC_STATEFUL_EXAMPLES_POSTGRES", "15"))
STEPS = int(os.environ.get("ASEMANTIC_STATEFUL_STEPS", "40"))
DOCS = 5
TWO_DAYS = 49 * 3600.0

_T = TypeVar("_T")

ACTIONS = (
    "round",
    "ingest",
    "flush",
    "sync",
    "advance",
    "ingest",
    "reconcile",
    "delete",
    "finish_remote",
    "cleanup",
    "sync",
    "reopen",
)
"""What a step does (repeats make an action likelier)."""

_RANK = {
    JobStatus.CREATED: 0,
    JobStatus.SUBMITTED: 1,
    JobStatus.PROCESSING: 2,
    JobStatus.COMPLETED: 3,
    JobStatus.FAILED: 3,
}
_ENDPOINTS = (
    "files.upload_start",
    "files.upload_chunk",
    "files.list",
    "files.delete",
    "files.download",
    "batches.create",
    "batches.get",
    "batches.list",
    "batches.delete",
)

REQUEST_FAULTS = st.one_of(
    st.builds(
        Fault,
        endpoint=st.sampled_from(_ENDPOINTS),
        status=st.sampled_from([429, 500, 503]),
        times=st.integers(1, 4),
    ),
    st.builds(
        Fault,
        endpoint=st.just("batches.create"),
        lose_response=st.just(True),
        drop_connection=st.booleans(),
    ),
    st.builds(
        Fault,
        endpoint=st.sampled_from(["files.upload_chunk", "files.delete", "batches.delete"]),
        lose_response=st.just(True),
    ),
    st.builds(Fault, endpoint=st.just("batches.create"), status=st.just(400)),
)
"""429/5xx on any endpoint, lost create (and upload, delete) responses, a refused create."""

JOB_FAULTS = st.one_of(
    st.builds(JobFault, outcome=st.sampled_from(["FAILED", "CANCELLED", "EXPIRED"])),
    st.builds(
        LineFault,
        code=st.sampled_from([400, 429, 500, 503]),
        fraction=st.sampled_from([0.34, 0.5, 1.0]),
    ),
    st.builds(
        ResultCorruption,
        garbage_lines=st.integers(0, 2),
        blank_lines=st.integers(0, 1),
        unknown_key_lines=st.integers(0, 2),
        missing_lines=st.integers(0, 2),
        unknown_fields=st.just(True),
    ),
)
"""What the next new job meets: a bad end, per-line errors, a malformed result file."""

AnyFault = Fault | JobFault | LineFault | ResultCorruption


class BatchPipeline(RuleBasedStateMachine):
    """The batch manager and the job state machine against the in-process emulator."""

    def __init__(self) -> None:
        super().__init__()
        self._runner = asyncio.Runner()
        self._folder = tempfile.TemporaryDirectory(prefix="asemantic-stateful-")
        self._path: harness.Target = self._run(self._new_database())
        self.emulator = GeminiEmulator()
        self._query_embedder = LexicalEmbedder(harness.SPACE)
        self.core: SemanticCore = self._run(self._open())
        self._seen: dict[str, JobStatus] = {}
        self._remote_of: dict[str, str] = {}
        self._made: set[str] = set()
        self._searched: list[tuple[Any, ...]] | None = None

    async def _new_database(self) -> harness.Target:
        """This example's empty database (a SQLite file here)."""
        return Path(self._folder.name) / "kb.db"

    async def _drop_database(self) -> None:
        """Remove what :meth:`_new_database` made beyond the folder (nothing here)."""

    async def _open(self) -> SemanticCore:
        # No create grace: in-process, a call is over when its rule returns, so a job
        # not found remotely was certainly not created. Queries are embedded locally
        # (search is checked against the stored vectors, whatever embeds the query).
        return await harness.open_in_process(
            self._path, self.emulator, create_grace=0.0, embedder=self._query_embedder
        )

    def _run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return self._runner.run(work)

    def _tolerate_provider(self, work: Awaitable[object]) -> None:
        """Run a manager call; the provider's trouble is allowed (the checks decide)."""

        async def call() -> None:
            try:
                await work
            except ProviderError as exc:
                event(f"a manager call raised {type(exc).__name__}")

        self._run(call())

    # --- the rule ----------------------------------------------------------------------
    # One rule that picks an action: Hypothesis switches whole rules off in some
    # examples (swarm testing), and with one rule per action too many of a small
    # budget's examples lose an action the pipeline needs to get anywhere.

    @initialize(count=st.integers(2, DOCS))
    def ingest_first(self, count: int) -> None:
        """Start with documents queued, so that every example has work to do."""
        for index in range(count):
            self._ingest(index, 0)

    @rule(
        action=st.sampled_from(ACTIONS),
        index=st.integers(0, DOCS - 1),
        version=st.integers(0, harness.VERSIONS - 1),
        max_size=st.sampled_from([100, 4, 1]),
        advance=st.sampled_from([5.0, 20.0, 100.0, TWO_DAYS]),
        faults=st.lists(st.one_of(JOB_FAULTS, REQUEST_FAULTS), max_size=2),
    )
    def step(
        self,
        action: str,
        index: int,
        version: int,
        max_size: int,
        advance: float,
        faults: list[AnyFault],
    ) -> None:
        """One action; its arguments are drawn every time and used when they apply.

        ``faults`` wait in the emulator's script for the calls and new jobs they
        match, now or later. ``round`` is a whole pass (reconcile, flush, every remote
        job finishes, sync), so that examples get far as well as wide."""
        self.emulator.faults.add(*faults)
        manager = self.core.batch_manager
        if action == "ingest":  # or edit: a new version changes some of its chunks
            self._ingest(index, version)
        elif action == "delete":
            self._run(self.core.delete_document(f"doc-{index}"))
        elif action == "round":
            self._tolerate_provider(manager.reconcile())
            self._tolerate_provider(manager.flush_queue(min_size=1, max_size=max_size))
            self._run(self._observe_remote())  # before sync deletes what was just made
            self.emulator.complete_all()
            self._tolerate_provider(manager.sync_status())
        elif action == "flush":
            self._tolerate_provider(manager.flush_queue(min_size=1, max_size=max_size))
        elif action == "sync":
            self._tolerate_provider(manager.sync_status())
        elif action == "reconcile":
            self._tolerate_provider(manager.reconcile())
        elif action == "cleanup":
            self._tolerate_provider(manager.cleanup_finished())
        elif action == "finish_remote":
            self.emulator.complete_all()
        elif action == "advance":  # after two days unread result files are gone (48 h)
            self.emulator.advance(advance)
        elif action == "reopen":
            self._run(self.core.aclose())
            self.core = self._run(self._open())
            self._searched = None  # a new store builds its search index anew
        else:
            raise AssertionError(f"unknown action {action!r}")

    def _ingest(self, index: int, version: int) -> None:
        source, text = harness.document(index, version)
        self._run(self.core.ingest(text, source=source, mode="async"))

    # --- the contracts -----------------------------------------------------------------

    @invariant()
    def contracts_hold(self) -> None:
        self._run(self._check())

    async def _check(self) -> None:
        core = self.core
        await harness.check_consistent(core)
        await harness.check_vectors(core, self.emulator)
        ready = [
            (c.chunk_id, c.content_hash)
            for c in await core.store.chunk_records()
            if c.status == "READY"
        ]
        ready.extend((chunk_id, blob.hex()) for chunk_id, blob in await core.store.vector_rows())
        if ready != self._searched:  # a search costs an embedding call: only on change
            await harness.check_search(core)
            self._searched = ready
        for job in await core.batch_jobs.jobs():
            before = self._seen.get(job.job_id)
            if before is not None:
                if harness.terminal(before):
                    assert job.status is before, f"finished job {job.job_id} moved to {job.status}"
                else:
                    assert _RANK[job.status] >= _RANK[before], f"{before} -> {job.status}"
            self._seen[job.job_id] = job.status
            event(f"a job reached {job.status.value}")
            for name in ("stale", "retried", "failed", "missing", "malformed", "unknown_keys"):
                if job.stats.get(name):
                    event(f"a completed job had {name} lines")
        for status, count in (await core.store.count_chunks_by_status()).items():
            if count:
                event(f"a chunk was {status}")
        await self._observe_remote()

    async def _observe_remote(self) -> None:
        """Every remote job has a job row (committed before the create), and no row
        ever had two remote jobs. Creates happen only in flush and reconcile, and
        deletes only in sync and cleanup, so looking after each step sees them all."""
        rows = {job.display_name for job in await self.core.batch_jobs.jobs()}
        for batch in self.emulator.batches:
            assert batch.display_name in rows, f"remote job {batch.name} has no job row"
            first = self._remote_of.setdefault(batch.display_name, batch.name)
            assert first == batch.name, f"two remote jobs for {batch.display_name}"
            self._made.add(batch.name)
        made = harness.actual_creates(self.emulator.requests)
        assert made == len(self._made), f"{made} creates, {len(self._made)} remote jobs seen"

    def teardown(self) -> None:
        try:
            self._run(self._final_drain())
        finally:
            try:
                self._run(self.core.aclose())
                self._run(self._drop_database())
            finally:
                self._runner.close()
                self._folder.cleanup()

    async def _final_drain(self) -> None:
        self.emulator.faults.clear()
        await self.core.aclose()
        self.core = await self._open()
        await harness.drain(self.core, self.emulator)
        # A drain round creates and deletes remote jobs: no per-step remote tracking
        # here; check_settled counts the creates against the job rows instead.
        await harness.check_consistent(self.core)
        await harness.check_vectors(self.core, self.emulator)
        await harness.check_search(self.core)
        await harness.check_settled(self.core, self.emulator)


class PostgresBatchPipeline(BatchPipeline):
    """The same machine on a fresh PostgreSQL database per example."""

    server: ClassVar[LocalPostgres | None] = None
    """The session's server, set by the :func:`_postgres_machine` fixture."""

    async def _new_database(self) -> harness.Target:
        server = PostgresBatchPipeline.server
        assert server is not None, "the postgres_server fixture did not run"
        self._url = await server.create_database(prefix="asemantic_stateful")
        return self._url

    async def _drop_database(self) -> None:
        server = PostgresBatchPipeline.server
        if server is not None:
            await server.drop_database(self._url)


@pytest.fixture
def _postgres_machine(postgres_server: LocalPostgres) -> Iterator[None]:
    PostgresBatchPipeline.server = postgres_server
    try:
        yield
    finally:
        PostgresBatchPipeline.server = None


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


BatchPipeline.TestCase.settings = _settings(EXAMPLES)
PostgresBatchPipeline.TestCase.settings = _settings(POSTGRES_EXAMPLES)
# A failure is shrunk for up to five minutes (Hypothesis's own limit) before it is
# reported: give the test room for that beyond the suite's 300 s timeout.
TestBatchPipeline = pytest.mark.timeout(600)(BatchPipeline.TestCase)
TestBatchPipelinePostgres = pytest.mark.skipif(not postgres_on_branch(), reason=NO_POSTGRES)(
    pytest.mark.usefixtures("_postgres_machine")(
        pytest.mark.timeout(600)(PostgresBatchPipeline.TestCase)
    )
)


@pytest.mark.skip(reason=NOT_DURABLE)
def test_batch_pipeline_memory() -> None:
    """The machine reopens its database and checks what survived: not on memory."""
