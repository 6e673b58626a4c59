"""The Store and JobStore methods the core and the batch layer read in one snapshot."""

from __future__ import annotations

from asemantic.adapters.sqlite import SqliteJobStore, SqliteStore
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.testing import LexicalEmbedder

from .helpers import make_write


async def test_jobs_is_one_job_store_per_store(store: SqliteStore) -> None:
    assert isinstance(store.jobs, SqliteJobStore)
    assert store.jobs is store.jobs


async def test_stats_of_an_empty_store_has_every_status(store: SqliteStore) -> None:
    stats = await store.stats()
    assert stats.empty
    assert stats.documents == 0
    assert dict(stats.chunks) == {status.value: 0 for status in EmbeddingStatus}
    assert dict(stats.jobs) == {status.value: 0 for status in JobStatus}
    assert dict(stats.tokens) == {"online": 0, "batch": 0, "query": 0}  # every route


async def test_stats_counts_documents_chunks_jobs_and_tokens(
    store: SqliteStore, embedder: LexicalEmbedder
) -> None:
    await store.write_document(make_write("a", ["one", "two"], embedder=embedder, ready=[0]))
    await store.write_document(make_write("b", ["three"]))
    await store.record_usage("online", texts=1, tokens=7)
    await store.record_usage("online", texts=1, tokens=5)
    await store.record_usage("query", texts=1, tokens=2)
    queued = await store.jobs.queued_chunks()
    await store.jobs.create_job(job_id="j1", display_name="job one", chunk_ids=[queued[0].chunk_id])
    stats = await store.stats()
    assert not stats.empty
    assert stats.documents == 2
    assert stats.chunks["READY"] == 1
    assert stats.chunks["PENDING"] == 2
    assert stats.chunks["FAILED"] == 0
    assert stats.jobs["CREATED"] == 1
    assert sum(stats.jobs.values()) == 1
    assert dict(stats.tokens) == {"online": 12, "batch": 0, "query": 2}
    assert dict(stats.chunks) == await store.count_chunks_by_status()


async def test_create_job_returns_the_committed_record(store: SqliteStore) -> None:
    await store.write_document(make_write("a", ["one", "two", "three"]))
    ids = [chunk.chunk_id for chunk in await store.jobs.queued_chunks()]
    record = await store.jobs.create_job(job_id="j1", display_name="job one", chunk_ids=ids[:2])
    assert record is not None
    assert record == await store.jobs.get_job("j1")
    assert record.status is JobStatus.CREATED
    assert dict(record.stats) == {"sent": 2}
    assert not record.cleaned


async def test_create_job_with_nothing_queued_leaves_no_job(store: SqliteStore) -> None:
    await store.write_document(make_write("a", ["one"]))
    ids = [chunk.chunk_id for chunk in await store.jobs.queued_chunks()]
    assert await store.jobs.create_job(job_id="j1", display_name="one", chunk_ids=ids)
    assert await store.jobs.create_job(job_id="j2", display_name="two", chunk_ids=ids) is None
    assert await store.jobs.get_job("j2") is None


async def test_snapshot_matches_the_separate_reads(store: SqliteStore) -> None:
    await store.write_document(make_write("a", ["one", "two", "three", "four"]))
    await store.write_document(make_write("b", ["five", "six"]))
    ids = [chunk.chunk_id for chunk in await store.jobs.queued_chunks()]
    await store.jobs.create_job(job_id="j1", display_name="one", chunk_ids=ids[:2])
    await store.jobs.create_job(job_id="j2", display_name="two", chunk_ids=ids[2:3])
    await store.jobs.create_job(job_id="j3", display_name="three", chunk_ids=ids[3:4])
    await store.jobs.mark_cleaned("j3")
    snapshot = await store.jobs.snapshot()
    assert [job.job_id for job in snapshot.jobs] == ["j1", "j2"]
    assert list(snapshot.jobs) == await store.jobs.jobs(uncleaned=True)
    assert list(snapshot.queued) == await store.jobs.queued_chunks()
    assert [chunk.chunk_id for chunk in snapshot.queued] == ids[4:]
    assert all(chunk.size > 0 for chunk in snapshot.queued)
    assert snapshot.pending == 6
    assert not snapshot.idle


async def test_snapshot_of_an_empty_store_is_idle(store: SqliteStore) -> None:
    snapshot = await store.jobs.snapshot()
    assert snapshot.idle
    assert snapshot.jobs == () and snapshot.queued == () and snapshot.pending == 0
