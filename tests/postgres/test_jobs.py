"""PostgresJobStore under concurrency: several stores (each its own pool, as separate
processes have) on one database at once.

The engine-neutral semantics are the contract suite's (tests/ports/test_job_store.py);
these tests add what only a shared server can show: two flushes claiming the same chunks,
two supervisors moving the same job, the same result slice applied twice at once, and a
large slice applied through COPY.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from asemantic.adapters.postgres.store import PostgresStore
from asemantic.domain.jobs import JobStatus
from asemantic.domain.linekeys import line_key
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import InvalidVectorError, StoreError
from asemantic.ports import ApplyCounts, JobChange, LineResult
from tests.ports.builders import vec

SPACE = EmbeddingSpace()
RETRY = RetryPolicy(max_attempts=3)
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


Host = PostgresStore
"""A store whose ``jobs`` is the PostgresJobStore under test."""


async def open_host(url: str) -> PostgresStore:
    return await PostgresStore.open(url, space=SPACE, max_size=4)


OpenHost = Callable[[], Awaitable[Host]]


@pytest.fixture
async def open_hosts(postgres_url: str) -> AsyncIterator[OpenHost]:
    """Open job stores on one database (each with its own store and pool)."""
    hosts: list[Host] = []

    async def opener() -> Host:
        host = await open_host(postgres_url)
        hosts.append(host)
        return host

    yield opener
    for host in hosts:
        await host.aclose()


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def seed(host: Host, n: int, *, source: str = "doc.md") -> list[tuple[int, str]]:
    """A document with ``n`` PENDING chunks; their (id, text)."""
    async with host.pool.acquire() as conn, conn.transaction():
        document_id = await conn.fetchval(
            "INSERT INTO documents (source, title, content_hash) VALUES ($1, 'T', $2) RETURNING id",
            source,
            source_hash(source),
        )
        texts = [f"{source} text {i}" for i in range(n)]
        rows = await conn.fetch(
            "INSERT INTO chunks (document_id, position, text, meta_json, content_hash, "
            "embedding_status) SELECT $1, p, t, m, h, 'PENDING' "
            "FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS u(p, t, m, h) "
            "RETURNING id, text",
            document_id,
            list(range(n)),
            texts,
            [json.dumps({"_vector_source": t, "token_estimate": 3}) for t in texts],
            [source_hash(t) for t in texts],
        )
    return sorted((int(r["id"]), str(r["text"])) for r in rows)


def ok(chunk: tuple[int, str], value: float = 1.0) -> LineResult:
    return LineResult(key=line_key(chunk[0], source_hash(chunk[1])), vector=vec(value, 0.5))


async def scalar(host: Host, sql: str, *args: object) -> Any:
    return await host.pool.fetchval(sql, *args)


async def test_a_job_goes_the_whole_way(open_hosts: OpenHost) -> None:
    host = await open_hosts()
    chunks = await seed(host, 3)
    ids = [c[0] for c in chunks]
    record = await host.jobs.create_job(job_id="j1", display_name="asemantic-j1", chunk_ids=ids)
    assert record is not None and record.stats == {"sent": 3}
    assert await host.jobs.get_job("j1") == record
    submitted = await host.jobs.transition_job(
        JobChange(
            job_id="j1",
            expected=JobStatus.CREATED,
            to=JobStatus.SUBMITTED,
            at=AT,
            remote_name="batches/1",
        )
    )
    assert submitted is not None and submitted.remote_name == "batches/1"
    counts = await host.jobs.apply_results("j1", [ok(c) for c in chunks], retry=RETRY)
    assert counts == ApplyCounts(ready=3)
    assert await scalar(host, "SELECT COUNT(*) FROM chunk_vectors") == 3
    assert await scalar(host, "SELECT SUM(texts) FROM usage_ledger WHERE route = 'batch'") == 3
    history = await host.pool.fetch(
        "SELECT from_status, to_status FROM batch_job_transitions ORDER BY id"
    )
    assert [tuple(r) for r in history] == [(None, "CREATED"), ("CREATED", "SUBMITTED")]
    snapshot = await host.jobs.snapshot()
    assert snapshot.pending == 0
    assert [job.job_id for job in snapshot.jobs] == ["j1"]


async def test_concurrent_flushes_put_each_chunk_in_one_job(open_hosts: OpenHost) -> None:
    hosts = [await open_hosts() for _ in range(3)]
    chunks = await seed(hosts[0], 60)
    ids = [c[0] for c in chunks]

    async def flush(index: int, round_: int) -> int:
        record = await hosts[index].jobs.create_job(
            job_id=f"j{index}-{round_}", display_name=f"d{index}-{round_}", chunk_ids=ids
        )
        return 0 if record is None else record.stats["sent"]

    sent = await asyncio.gather(*(flush(i, r) for r in range(4) for i in range(3)))
    assert sum(sent) == 60
    rows = await hosts[0].pool.fetch(
        "SELECT batch_job_id, COUNT(*) FROM chunks GROUP BY batch_job_id"
    )
    assert None not in {r[0] for r in rows}
    jobs = await hosts[0].jobs.jobs()
    assert sorted(j.stats["sent"] for j in jobs) == sorted(n for n in sent if n)
    assert {r[0]: r[1] for r in rows} == {j.job_id: j.stats["sent"] for j in jobs}
    assert await hosts[1].jobs.queued_chunks() == []


async def test_of_two_supervisors_moving_one_job_exactly_one_wins(open_hosts: OpenHost) -> None:
    hosts = [await open_hosts() for _ in range(4)]
    chunks = await seed(hosts[0], 4)
    await hosts[0].jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[c[0] for c in chunks])
    change = JobChange(
        job_id="j1",
        expected=JobStatus.CREATED,
        to=JobStatus.FAILED,
        at=AT,
        error_message="gone",
        release=RETRY,
    )
    moved = await asyncio.gather(*(h.jobs.transition_job(change) for h in hosts))
    assert sum(record is not None for record in moved) == 1
    history = await scalar(
        hosts[0], "SELECT COUNT(*) FROM batch_job_transitions WHERE to_status = 'FAILED'"
    )
    assert history == 1
    # The chunks were released once: one more attempt each, back in the queue.
    attempts = await hosts[0].pool.fetch("SELECT attempts, batch_job_id FROM chunks")
    assert [tuple(r) for r in attempts] == [(1, None)] * 4


async def test_the_same_slice_applied_at_once_twice_counts_once(open_hosts: OpenHost) -> None:
    first, second = await open_hosts(), await open_hosts()
    chunks = await seed(first, 50)
    await first.jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[c[0] for c in chunks])
    results = [ok(c, float(i + 1)) for i, c in enumerate(chunks)]
    counts = await asyncio.gather(
        first.jobs.apply_results("j1", results, retry=RETRY),
        second.jobs.apply_results("j1", results, retry=RETRY),
    )
    assert sorted(counts, key=lambda c: c.ready) == [ApplyCounts(stale=50), ApplyCounts(ready=50)]
    assert await scalar(first, "SELECT COUNT(*) FROM chunk_vectors") == 50
    assert await scalar(first, "SELECT SUM(texts) FROM usage_ledger") == 50
    assert await scalar(first, "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'") == 50


async def test_a_large_slice_is_applied_in_one_transaction(open_hosts: OpenHost) -> None:
    host = await open_hosts()
    chunks = await seed(host, 3000)
    await host.jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[c[0] for c in chunks])
    bad = LineResult(key=line_key(chunks[-1][0], source_hash(chunks[-1][1])), vector=b"\0" * 8)
    results = [ok(c, float(i % 97 + 1)) for i, c in enumerate(chunks)]
    with pytest.raises(InvalidVectorError):  # nothing of the slice is written
        await host.jobs.apply_results("j1", [*results[:-1], bad], retry=RETRY)
    assert await scalar(host, "SELECT COUNT(*) FROM chunk_vectors") == 0
    assert await host.jobs.apply_results("j1", results, retry=RETRY) == ApplyCounts(ready=3000)
    stored = await host.pool.fetchval(
        "SELECT embedding FROM chunk_vectors WHERE chunk_id = $1", chunks[5][0]
    )
    assert bytes(stored) == vec(6.0, 0.5)
    assert await host.jobs.job_chunks("j1") == []


async def test_a_duplicate_remote_name_is_refused(open_hosts: OpenHost) -> None:
    host = await open_hosts()
    chunks = await seed(host, 2)
    for i, chunk in enumerate(chunks):
        await host.jobs.create_job(job_id=f"j{i}", display_name=f"d{i}", chunk_ids=[chunk[0]])
    for i in range(2):
        change = JobChange(
            job_id=f"j{i}",
            expected=JobStatus.CREATED,
            to=JobStatus.SUBMITTED,
            at=AT,
            remote_name="batches/same",
        )
        if i == 0:
            assert await host.jobs.transition_job(change) is not None
        else:
            with pytest.raises(StoreError, match="23505"):
                await host.jobs.transition_job(change)
    second = await host.jobs.get_job("j1")
    assert second is not None and second.status is JobStatus.CREATED
