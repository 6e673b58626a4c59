"""The read-only inspection ports, on every engine: what audits and the engine-neutral
suites read instead of an engine's own tables.

``Store.chunk_records``, ``vector_rows`` and ``usage``; ``JobStore.transitions`` and
``current_lease``.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

from asemantic import EmbeddingSpace, GoogleKeyring, JobStatus, SemanticCore
from asemantic.ports import JobChange
from asemantic.testing import LexicalEmbedder
from tests.support import Databases

SPACE = EmbeddingSpace(model="lexical-hash-v1", dimensions=64)
ROUTES = {"online", "batch", "query"}


async def _core(databases: Databases, tmp_path: Path) -> SemanticCore:
    target = await databases.target(tmp_path / "kb.db", space=SPACE)
    return await SemanticCore.open(
        target, embedder=LexicalEmbedder(SPACE), keys=GoogleKeyring("k", batch_key="b")
    )


async def test_chunk_records_vectors_and_usage(databases: Databases, tmp_path: Path) -> None:
    core = await _core(databases, tmp_path)
    try:
        assert await core.store.chunk_records() == []
        assert await core.store.vector_rows() == []
        assert {r: (u.texts, u.tokens) for r, u in (await core.store.usage()).items()} == {
            route: (0, 0) for route in ROUTES
        }
        await core.ingest("# Refunds\n\nRefunds within thirty days.", source="refunds.md")
        await core.ingest("# Later\n\nQueued for the batch.", source="later.md", mode="async")
        records = await core.store.chunk_records()
        assert [r.chunk_id for r in records] == sorted(r.chunk_id for r in records)
        by_source = {r.source: r for r in records}
        assert set(by_source) == {"refunds.md", "later.md"}
        ready, pending = by_source["refunds.md"], by_source["later.md"]
        assert (ready.status, pending.status) == ("READY", "PENDING")
        assert ready.title == "Refunds" and ready.position == 0 and ready.job_id is None
        assert "Refunds within thirty days" in ready.vector_source
        expected = hashlib.sha256(ready.vector_source.encode()).hexdigest()
        assert ready.content_hash == expected
        assert ready.error_message is None and ready.attempts == 0
        snapshot = await core.store.get_document("refunds.md")
        assert snapshot is not None and snapshot.document_id == ready.document_id
        rows = await core.store.vector_rows()
        assert [chunk_id for chunk_id, _ in rows] == [ready.chunk_id]
        assert len(rows[0][1]) == 4 * SPACE.dimensions
        usage = await core.store.usage()
        assert set(usage) == ROUTES
        assert usage["online"].texts == 1 and usage["online"].tokens > 0
        assert usage["batch"].texts == 0
    finally:
        await core.aclose()


async def test_transitions_and_the_current_lease(databases: Databases, tmp_path: Path) -> None:
    core = await _core(databases, tmp_path)
    try:
        jobs = core.batch_jobs
        assert await jobs.transitions("no-such-job") == []
        assert await jobs.current_lease() is None
        await core.ingest("# Later\n\nQueued for the batch.", source="later.md", mode="async")
        (queued,) = await jobs.queued_chunks()
        job = await jobs.create_job(
            job_id="j1", display_name="asemantic-j1", chunk_ids=[queued.chunk_id]
        )
        assert job is not None
        at = datetime.now(job.created_at.tzinfo)
        change = JobChange(
            job_id="j1",
            expected=JobStatus.CREATED,
            to=JobStatus.SUBMITTED,
            at=at,
            remote_name="batches/j1",
        )
        assert await jobs.transition_job(change) is not None
        steps = await jobs.transitions("j1")
        assert [(s.from_status, s.to_status) for s in steps] == [
            (None, JobStatus.CREATED),
            (JobStatus.CREATED, JobStatus.SUBMITTED),
        ]
        assert all(s.job_id == "j1" for s in steps)
        now = time.time()
        taken = await jobs.acquire_lease("host-a:1", ttl=30.0, now=now)
        assert taken.acquired
        held = await jobs.current_lease()
        assert held is not None and held.owner == "host-a:1" and not held.acquired
        assert abs(held.expires_at - (now + 30.0)) < 1e-3
        await jobs.release_lease("host-a:1")
        assert await jobs.current_lease() is None
    finally:
        await core.aclose()
