"""Contracts 1-3 under random interleavings with embedding-space steps.

The machine of :mod:`tests.contracts.test_stateful` (ingest, edit, delete, flush,
sync, reconcile, clean up, clock moves, remote faults, reopen) with more steps: migrate
to another space, a pass of every other space's pipeline, switch (sometimes forced),
roll back and drop. Refused commands must change nothing. After every step, besides
the original checks on space 1: in every space other than 1, no PENDING chunk sits in a
finished job, every FAILED chunk has a reason, every READY chunk has exactly one vector
(of its current text, in that space's dimensions) and no other chunk has one; exactly
one space is active, and search sees exactly the active space's READY chunks. At the end
everything is drained: every live space complete, nothing left remotely.

SQLite only (the durable engine that holds several spaces). ``ASEMANTIC_STATEFUL_EXAMPLES``
and ``ASEMANTIC_STATEFUL_STEPS`` set the size, as for the original machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import rule

from asemantic import ProviderError, SemanticCore
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import SpaceRecord, StoredSpaceState
from asemantic.errors import SpaceError
from asemantic.ports import SupportsSpaces
from asemantic.testing import LexicalEmbedder
from tests.contracts import harness
from tests.contracts.test_stateful import EXAMPLES, BatchPipeline, _settings

SPACE_ACTIONS = ("migrate", "space_round", "space_round", "switch", "rollback", "drop")
TARGETS = (harness.NEW_SPACE, EmbeddingSpace(dimensions=512))


class SpacesPipeline(BatchPipeline):
    """The batch pipeline machine with migrations, switches, rollbacks and drops."""

    def __init__(self) -> None:
        self._active_space = harness.SPACE
        super().__init__()

    async def _open(self) -> SemanticCore:
        self._query_embedder = LexicalEmbedder(self._active_space)
        return await harness.open_in_process(
            self._path,
            self.emulator,
            create_grace=0.0,
            embedder=self._query_embedder,
            space=self._active_space,
        )

    def _spaces(self) -> SupportsSpaces:
        store = self.core.store
        assert isinstance(store, SupportsSpaces)
        return store

    async def _records(self) -> list[SpaceRecord]:
        return await self._spaces().spaces.list_spaces()

    @rule(
        action=st.sampled_from(SPACE_ACTIONS),
        to=st.sampled_from(TARGETS),
        force=st.booleans(),
    )
    def space_step(self, action: str, to: EmbeddingSpace, force: bool) -> None:
        """One embedding-space step; a refused one must leave every space as it was."""
        if action == "space_round":
            self._run(self._space_round())
            return
        before = self._run(self._records())

        async def attempt() -> None:
            records = {r.space_id: r for r in before}
            active = next(r for r in before if r.active)
            standby = [r for r in before if r.stored is StoredSpaceState.STANDBY]
            if action == "migrate":
                await self.core.space_migrate(to)
            elif action == "switch":
                chosen = standby[0].space_id if standby else max(records)
                await self._switch(
                    self.core.space_switch(
                        chosen, force=force, embedder=self._q(records.get(chosen))
                    )
                )
            elif action == "rollback":
                previous = records.get(active.previous_id or 0)
                await self._switch(
                    self.core.space_rollback(force=force, embedder=self._q(previous))
                )
            elif action == "drop":
                chosen = standby[-1].space_id if standby else active.space_id
                await self.core.space_drop(chosen)

        try:
            self._run(attempt())
            event(f"space {action} done")
        except SpaceError:
            event(f"space {action} refused")
            after = self._run(self._records())
            assert [(r.space_id, r.stored, r.progress) for r in after] == [
                (r.space_id, r.stored, r.progress) for r in before
            ], f"a refused {action} changed the spaces"

    def _q(self, record: SpaceRecord | None) -> LexicalEmbedder:
        return LexicalEmbedder(record.space if record is not None else self._active_space)

    async def _switch(self, switching: Any) -> None:
        outcome = await switching
        self._active_space = outcome.active.space
        self._query_embedder = self.core.embedder  # type: ignore[assignment]
        self._searched = None

    async def _space_round(self, *, observe: bool = True) -> None:
        for manager in await self.core.space_managers():
            for call in (manager.reconcile(), manager.flush_queue(min_size=1)):
                try:
                    await call
                except ProviderError as exc:
                    event(f"a space manager call raised {type(exc).__name__}")
            if observe:  # before sync deletes what was just made
                await self._observe_remote()
            self.emulator.complete_all()
            try:
                await manager.sync_status()
            except ProviderError as exc:
                event(f"a space manager call raised {type(exc).__name__}")

    # --- the contracts, per space ----------------------------------------------------------

    async def _check(self) -> None:
        if self.core.store.space == harness.SPACE:
            await super()._check()  # space 1 active: the original checks, search included
        else:
            await harness.check_consistent(self.core)
            await harness.check_vectors(self.core, self.emulator)
            await self._observe_remote()
        await self._check_spaces()

    async def _check_spaces(self) -> None:
        store = self._spaces()
        records = await self._records()
        assert sum(1 for r in records if r.active) == 1, "not exactly one active space"
        chunks = {c.chunk_id: c for c in await self.core.store.chunk_records()}
        for record in records:
            if record.space_id == 1:
                continue
            rows = await store.spaces.space_chunks(record.space_id)
            if record.stored is StoredSpaceState.RETIRED:
                assert not rows and not await _vectors_or_none(store, record.space_id)
                continue
            assert {r.chunk_id for r in rows} == set(chunks), "a chunk lacks its space row"
            jobs = {j.job_id: j.status for j in await self._space_jobs(record)}
            vectors = dict(await store.spaces.vector_rows(record.space_id))
            for row in rows:
                if row.status == "PENDING" and row.job_id is not None:
                    assert harness.terminal(jobs[row.job_id]) is False, "PENDING in a finished job"
                if row.status == "FAILED":
                    assert row.error_message, "a FAILED chunk without a reason"
                if row.status != "READY":
                    assert row.chunk_id not in vectors, f"{row.status} chunk has a vector"
                    continue
                chunk = chunks[row.chunk_id]
                got = np.frombuffer(vectors[row.chunk_id], dtype="<f4").astype(np.float64)
                want = np.asarray(
                    self.emulator.embed(
                        chunk.vector_source,
                        dimensions=record.space.dimensions,
                        task_type=record.space.task_type,
                        title=chunk.title or None,
                    ),
                    dtype=np.float64,
                )
                cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
                assert cosine > 1 - 1e-5, f"space {record.space_id}: stale vector"
            if record.active:
                ready = {r.chunk_id for r in rows if r.status == "READY"}
                hits = await self.core.search("refund rules", k=len(chunks) + 3, mode="vector")
                assert {h.chunk_id for h in hits} == ready, "search misses the active space"
                for hit in await self.core.search("refund rules", k=len(chunks) + 3):
                    said = hit.embedding_status is EmbeddingStatus.READY
                    assert said == (hit.chunk_id in ready), "a hit's status is not its space's"
        event(f"{len(records)} spaces registered")

    async def _space_jobs(self, record: SpaceRecord) -> list[Any]:
        return await self._spaces().spaces.jobs(record.space_id, record.space).jobs()

    async def _observe_remote(self) -> None:
        rows = {job.display_name for job in await self.core.batch_jobs.jobs()}
        for record in await self._records():
            if record.space_id != 1:
                rows |= {job.display_name for job in await self._space_jobs(record)}
        for batch in self.emulator.batches:
            assert batch.display_name in rows, f"remote job {batch.name} has no job row"
            first = self._remote_of.setdefault(batch.display_name, batch.name)
            assert first == batch.name, f"two remote jobs for {batch.display_name}"
            self._made.add(batch.name)
        made = harness.actual_creates(self.emulator.requests)
        assert made == len(self._made), f"{made} creates, {len(self._made)} remote jobs seen"

    async def _final_drain(self) -> None:
        self.emulator.faults.clear()
        await self.core.aclose()
        self.core = await self._open()
        for _ in range(60):
            await harness.drain(self.core, self.emulator)
            await self._space_round(observe=False)
            if await harness.spaces_settled(self.core):
                break
        assert await harness.spaces_settled(self.core), await harness.describe(self.core)
        # A drain creates and deletes remote jobs: count creates against job rows instead.
        await self._check_spaces()
        jobs = list(await self.core.batch_jobs.jobs())
        for record in await self._records():
            if record.space_id != 1:
                jobs += await self._space_jobs(record)
        with_remote = sum(1 for job in jobs if job.remote_name)
        made = harness.actual_creates(self.emulator.requests)
        assert made == with_remote, f"{made} remote creates for {with_remote} job rows"
        leftovers = self.emulator.remote_leftovers()
        assert not leftovers, f"remote leftovers: {leftovers}"
        for record in await self._records():
            if record.stored is not StoredSpaceState.RETIRED:
                assert record.progress.complete or record.progress.failed


async def _vectors_or_none(store: SupportsSpaces, space_id: int) -> list[tuple[int, bytes]]:
    try:
        return await store.spaces.vector_rows(space_id)
    except Exception:  # a retired space has no vector table any more
        return []


SpacesPipeline.TestCase.settings = _settings(EXAMPLES)
TestSpacesPipeline = pytest.mark.timeout(600)(SpacesPipeline.TestCase)
