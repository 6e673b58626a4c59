"""The JobStore contract: job creation, snapshots, transitions, results and the lease."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.jobs import JobStatus
from asemantic.domain.linekeys import line_key
from asemantic.domain.policy import RetryPolicy
from asemantic.errors import InvalidVectorError, StoreClosedError, StoreError
from asemantic.ports import ApplyCounts, JobChange, JobRecord, LineResult, Store

from .builders import AXIS, angle, chunk_ids, error_line, make_write, ok_line, sha, vec

READY, PENDING, FAILED = (s.value for s in EmbeddingStatus)
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RETRY = RetryPolicy(max_attempts=3)


async def _pending(store: Store, source: str = "doc.md", n: int = 3) -> list[int]:
    texts = [f"{source} text {i}" for i in range(n)]
    await store.write_document(make_write(source, texts, title=f"Title of {source}"))
    return await chunk_ids(store, source)


async def _job(store: Store, job_id: str, chunks: list[int]) -> JobRecord:
    record = await store.jobs.create_job(
        job_id=job_id, display_name=f"asemantic-{job_id}", chunk_ids=chunks
    )
    assert record is not None
    return record


def _change(job_id: str, expected: JobStatus, to: JobStatus, **extra: Any) -> JobChange:
    return JobChange(job_id=job_id, expected=expected, to=to, at=AT, **extra)


async def _statuses(store: Store, source: str = "doc.md") -> list[EmbeddingStatus]:
    snapshot = await store.get_document(source)
    assert snapshot is not None
    return [chunk.status for chunk in snapshot.chunks]


async def _queued_ids(store: Store) -> list[int]:
    return [chunk.chunk_id for chunk in await store.jobs.queued_chunks()]


# --- creating jobs ------------------------------------------------------------------


async def test_create_job_returns_the_record(store: Store) -> None:
    ids = await _pending(store)
    record = await store.jobs.create_job(job_id="j1", display_name="asemantic-j1", chunk_ids=ids)
    assert record is not None
    assert record.job_id == "j1"
    assert record.display_name == "asemantic-j1"
    assert record.status is JobStatus.CREATED
    assert record.stats == {"sent": 3}
    assert (record.remote_name, record.input_file, record.output_file) == (None, None, None)
    assert record.error_message is None
    assert not record.cleaned
    assert record.create_attempted_at is None
    assert await store.jobs.get_job("j1") == record
    await _assert_ok(store)


async def test_create_job_takes_only_queued_chunks(store: Store) -> None:
    ids = await _pending(store, n=4)
    await _job(store, "first", [ids[0]])
    await store.bulk_update_vectors({ids[1]: vec(1)})
    record = await _job(store, "second", [*ids, ids[2], 10_000])
    assert record.stats == {"sent": 2}
    assert [c.chunk_id for c in await store.jobs.job_chunks("second")] == [ids[2], ids[3]]
    assert [c.chunk_id for c in await store.jobs.job_chunks("first")] == [ids[0]]
    assert await _queued_ids(store) == []


async def test_create_job_with_nothing_queued_makes_no_job(store: Store) -> None:
    ids = await _pending(store, n=1)
    await _job(store, "first", ids)
    none = await store.jobs.create_job(job_id="second", display_name="d2", chunk_ids=ids)
    assert none is None
    assert await store.jobs.get_job("second") is None
    assert [job.job_id for job in await store.jobs.jobs()] == ["first"]
    assert await store.jobs.create_job(job_id="third", display_name="d3", chunk_ids=[]) is None


async def test_duplicate_job_id_or_name_is_refused_and_changes_nothing(store: Store) -> None:
    ids = await _pending(store)
    await _job(store, "j1", [ids[0]])
    with pytest.raises(StoreError):
        await store.jobs.create_job(job_id="j1", display_name="other", chunk_ids=[ids[1]])
    with pytest.raises(StoreError):
        await store.jobs.create_job(job_id="j2", display_name="asemantic-j1", chunk_ids=[ids[1]])
    assert await _queued_ids(store) == ids[1:]
    assert [job.job_id for job in await store.jobs.jobs()] == ["j1"]


async def test_job_chunks_carry_the_text_to_send(store: Store) -> None:
    write = make_write("doc.md", ["first", "second"], title="Book", heading=("Ch 1",))
    await store.write_document(write)
    ids = await chunk_ids(store, "doc.md")
    await _job(store, "j1", ids)
    chunks = await store.jobs.job_chunks("j1")
    assert [(c.chunk_id, c.text, c.title, c.attempts) for c in chunks] == [
        (ids[0], "Ch 1\nfirst", "Book", 0),
        (ids[1], "Ch 1\nsecond", "Book", 0),
    ]
    assert [c.content_hash for c in chunks] == [d.content_hash for d in write.drafts]
    assert await store.jobs.job_chunks("unknown") == []


async def test_job_hashes_are_the_pending_chunks_keys_parts(store: Store) -> None:
    write = make_write("doc.md", ["first", "second", "third"])
    await store.write_document(write)
    ids = await chunk_ids(store, "doc.md")
    await _job(store, "j1", ids)
    hashes = [d.content_hash for d in write.drafts]
    assert await store.jobs.job_hashes("j1") == list(zip(ids, hashes, strict=True))
    await store.jobs.apply_results("j1", [ok_line(ids[1], "second", AXIS)], retry=RETRY)
    assert await store.jobs.job_hashes("j1") == [(ids[0], hashes[0]), (ids[2], hashes[2])]
    assert await store.jobs.job_hashes("unknown") == []


async def test_queued_chunks_by_id_with_their_size(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["ab", "héllo"], heading=("H",)))
    ids = await chunk_ids(store, "doc.md")
    queued = await store.jobs.queued_chunks()
    assert [(q.chunk_id, q.size) for q in queued] == [
        (ids[0], len(b"H\nab")),
        (ids[1], len("H\nhéllo".encode())),
    ]


async def test_pending_chunk_keeps_its_job_when_rewritten_unchanged(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    texts = [f"doc.md text {i}" for i in range(2)]
    outcome = await store.write_document(make_write("doc.md", [*texts, "new"]))
    assert (outcome.unchanged, outcome.stored, outcome.pending) == (2, 1, 1)
    assert [c.chunk_id for c in await store.jobs.job_chunks("j1")] == ids
    new = (await chunk_ids(store, "doc.md"))[2]
    assert await _queued_ids(store) == [new]
    await _assert_ok(store)


# --- snapshots and listings ---------------------------------------------------------


async def test_snapshot_of_an_empty_database_is_idle(store: Store) -> None:
    snapshot = await store.jobs.snapshot()
    assert snapshot.idle
    assert (snapshot.jobs, snapshot.queued, snapshot.pending) == ((), (), 0)


async def test_snapshot_holds_uncleaned_jobs_oldest_first_queued_and_pending(
    store: Store,
) -> None:
    ids = await _pending(store, n=5)
    await _job(store, "zz-old", [ids[0]])
    await _job(store, "aa-new", [ids[1], ids[2]])
    await store.bulk_update_vectors({ids[3]: vec(1)})
    snapshot = await store.jobs.snapshot()
    assert [job.job_id for job in snapshot.jobs] == ["zz-old", "aa-new"]
    assert [q.chunk_id for q in snapshot.queued] == [ids[4]]
    assert snapshot.pending == 4
    assert not snapshot.idle
    assert [j.job_id for j in snapshot.in_status(JobStatus.CREATED)] == ["zz-old", "aa-new"]


async def test_mark_cleaned_removes_a_job_from_the_snapshot(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", [ids[0]])
    await _job(store, "j2", [ids[1]])
    await store.jobs.mark_cleaned("j1")
    assert [job.job_id for job in (await store.jobs.snapshot()).jobs] == ["j2"]
    assert [job.job_id for job in await store.jobs.jobs(uncleaned=True)] == ["j2"]
    assert [job.job_id for job in await store.jobs.jobs()] == ["j1", "j2"]
    cleaned = await store.jobs.get_job("j1")
    assert cleaned is not None and cleaned.cleaned
    await store.jobs.mark_cleaned("unknown")  # nothing to clean: no error


async def test_jobs_by_status(store: Store) -> None:
    ids = await _pending(store, n=3)
    for i, job_id in enumerate(["a", "b", "c"]):
        await _job(store, job_id, [ids[i]])
    await store.jobs.transition_job(_change("b", JobStatus.CREATED, JobStatus.SUBMITTED))
    await store.jobs.transition_job(_change("c", JobStatus.CREATED, JobStatus.FAILED))
    listed = await store.jobs.jobs([JobStatus.CREATED, JobStatus.SUBMITTED])
    assert [job.job_id for job in listed] == ["a", "b"]
    assert [job.job_id for job in await store.jobs.jobs([JobStatus.FAILED])] == ["c"]
    assert await store.jobs.jobs([]) == []


async def test_mark_create_attempt_sets_and_clears(store: Store) -> None:
    ids = await _pending(store, n=1)
    await _job(store, "j1", ids)
    await store.jobs.mark_create_attempt("j1", AT)
    marked = await store.jobs.get_job("j1")
    assert marked is not None and marked.create_attempted_at == AT
    await store.jobs.mark_create_attempt("j1", None)
    cleared = await store.jobs.get_job("j1")
    assert cleared is not None and cleared.create_attempted_at is None


# --- transitions --------------------------------------------------------------------


async def test_transition_sets_status_and_fields(store: Store) -> None:
    ids = await _pending(store)
    await _job(store, "j1", ids)
    record = await store.jobs.transition_job(
        _change(
            "j1",
            JobStatus.CREATED,
            JobStatus.SUBMITTED,
            remote_name="batches/1",
            input_file="files/in",
            stats={"sent": 3, "extra": 1},
        )
    )
    assert record is not None
    assert record.status is JobStatus.SUBMITTED
    assert (record.remote_name, record.input_file, record.output_file) == (
        "batches/1",
        "files/in",
        None,
    )
    assert record.stats == {"sent": 3, "extra": 1}
    assert record.updated_at == AT
    assert await store.jobs.get_job("j1") == record
    later = await store.jobs.transition_job(
        _change("j1", JobStatus.SUBMITTED, JobStatus.PROCESSING, output_file="files/out")
    )
    assert later is not None
    assert (later.remote_name, later.input_file, later.output_file) == (
        "batches/1",
        "files/in",
        "files/out",
    )
    assert later.stats == {"sent": 3, "extra": 1}  # kept when not given


async def test_stale_transition_returns_none_and_changes_nothing(store: Store) -> None:
    ids = await _pending(store)
    before = await _job(store, "j1", ids)
    stale = await store.jobs.transition_job(
        _change(
            "j1",
            JobStatus.SUBMITTED,
            JobStatus.FAILED,
            error_message="late",
            release=RETRY,
        )
    )
    assert stale is None
    assert await store.jobs.get_job("j1") == before
    assert [c.chunk_id for c in await store.jobs.job_chunks("j1")] == ids
    unknown = _change("nope", JobStatus.CREATED, JobStatus.SUBMITTED)
    assert await store.jobs.transition_job(unknown) is None


async def test_release_puts_chunks_back_with_one_more_attempt(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    record = await store.jobs.transition_job(
        _change("j1", JobStatus.CREATED, JobStatus.FAILED, release=RETRY, release_reason="gone")
    )
    assert record is not None and record.status is JobStatus.FAILED
    assert await store.jobs.job_chunks("j1") == []
    assert await _queued_ids(store) == ids
    await _job(store, "j2", ids)
    assert [c.attempts for c in await store.jobs.job_chunks("j2")] == [1, 1]
    await _assert_ok(store)


async def test_release_fails_chunks_past_the_policy(store: Store) -> None:
    ids = await _pending(store, n=2)
    policy = RetryPolicy(max_attempts=2)
    for n, job_id in enumerate(["j1", "j2"]):
        await _job(store, job_id, ids)
        await store.jobs.transition_job(
            _change(job_id, JobStatus.CREATED, JobStatus.FAILED, release=policy)
        )
        expected = [EmbeddingStatus.PENDING] * 2 if n == 0 else [EmbeddingStatus.FAILED] * 2
        assert await _statuses(store) == expected
    assert await _queued_ids(store) == []
    snapshot = await store.jobs.snapshot()
    assert snapshot.pending == 0
    assert await store.count_chunks_by_status() == {READY: 0, PENDING: 0, FAILED: 2}
    await _assert_ok(store)


async def test_transition_without_release_leaves_chunks_in_the_job(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    await store.jobs.transition_job(_change("j1", JobStatus.CREATED, JobStatus.SUBMITTED))
    assert [c.chunk_id for c in await store.jobs.job_chunks("j1")] == ids
    assert await _queued_ids(store) == []


# --- results ------------------------------------------------------------------------


def _text(i: int) -> str:
    return f"doc.md text {i}"


async def test_apply_results_counts_each_outcome(store: Store) -> None:
    ids = await _pending(store, n=5)
    await _job(store, "j1", ids[:4])
    results = [
        ok_line(ids[0], _text(0), angle(10), tokens=7),
        error_line(ids[1], _text(1), code=400, status="INVALID_ARGUMENT"),
        error_line(ids[2], _text(2), code=429, status="RESOURCE_EXHAUSTED"),
        ok_line(ids[3], "some other text", angle(20)),  # hash of another text
        ok_line(ids[4], _text(4), angle(30)),  # queued, in no job
        LineResult(key="not-a-key", vector=angle(40)),
    ]
    counts = await store.jobs.apply_results("j1", results, retry=RETRY)
    assert counts == ApplyCounts(ready=1, failed=1, retried=1, stale=3)
    assert await _statuses(store) == [
        EmbeddingStatus.READY,
        EmbeddingStatus.FAILED,
        EmbeddingStatus.PENDING,
        EmbeddingStatus.PENDING,
        EmbeddingStatus.PENDING,
    ]
    assert [h.chunk_id for h in await store.search(AXIS, k=10)] == [ids[0]]
    assert [c.chunk_id for c in await store.jobs.job_chunks("j1")] == [ids[3]]
    assert await _queued_ids(store) == [ids[2], ids[4]]
    await _job(store, "j2", [ids[2]])
    [retried] = await store.jobs.job_chunks("j2")
    assert retried.attempts == 1
    await _assert_ok(store)


async def test_apply_results_records_batch_tokens(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    results = [ok_line(ids[0], _text(0), vec(1), tokens=11), ok_line(ids[1], _text(1), vec(2))]
    await store.jobs.apply_results("j1", results, retry=RETRY)
    # The second line has no count: the estimate made at ingestion stands in.
    estimate = max(1, len(_text(1)) // 4)
    assert (await store.stats()).tokens.get("batch", 0) == 11 + estimate


async def test_result_for_changed_text_is_stale(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    await store.write_document(make_write("doc.md", [_text(0), "rewritten"]))
    counts = await store.jobs.apply_results(
        "j1",
        [ok_line(ids[0], _text(0), vec(1)), ok_line(ids[1], _text(1), vec(1))],
        retry=RETRY,
    )
    assert counts == ApplyCounts(ready=1, stale=1)
    assert [h.chunk_id for h in await store.search(AXIS, k=10)] == [ids[0]]
    await _assert_ok(store)


async def test_result_for_another_job_is_stale(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", [ids[0]])
    await _job(store, "j2", [ids[1]])
    counts = await store.jobs.apply_results("j1", [ok_line(ids[1], _text(1), vec(1))], retry=RETRY)
    assert counts == ApplyCounts(stale=1)
    assert (await store.count_chunks_by_status())[READY] == 0


async def test_results_applied_twice_are_stale_the_second_time(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    results = [
        ok_line(ids[0], _text(0), vec(1)),
        error_line(ids[1], _text(1), code=400, status="INVALID_ARGUMENT"),
    ]
    assert await store.jobs.apply_results("j1", results, retry=RETRY) == ApplyCounts(
        ready=1, failed=1
    )
    assert await store.jobs.apply_results("j1", results, retry=RETRY) == ApplyCounts(stale=2)
    await _assert_ok(store)


async def test_retryable_error_past_the_policy_fails_the_chunk(store: Store) -> None:
    ids = await _pending(store, n=1)
    policy = RetryPolicy(max_attempts=1)
    await _job(store, "j1", ids)
    line = error_line(ids[0], _text(0), code=503, status="UNAVAILABLE")
    assert await store.jobs.apply_results("j1", [line], retry=policy) == ApplyCounts(failed=1)
    assert await _statuses(store) == [EmbeddingStatus.FAILED]
    await _assert_ok(store)


async def test_bad_vector_in_results_is_refused_and_changes_nothing(store: Store) -> None:
    ids = await _pending(store, n=3)
    await _job(store, "j1", ids)
    results = [
        error_line(ids[0], _text(0), code=400, status="INVALID_ARGUMENT"),
        ok_line(ids[1], _text(1), vec(1)),
        LineResult(key=line_key(ids[2], sha(_text(2))), vector=vec(float("nan"))),
    ]
    with pytest.raises(InvalidVectorError):
        await store.jobs.apply_results("j1", results, retry=RETRY)
    assert await _statuses(store) == [EmbeddingStatus.PENDING] * 3
    assert [c.chunk_id for c in await store.jobs.job_chunks("j1")] == ids
    assert await store.search(AXIS, k=5) == []
    await _assert_ok(store)


# --- lease and identity -------------------------------------------------------------


async def test_lease_acquire_renew_refuse_and_release(store: Store) -> None:
    jobs = store.jobs
    first = await jobs.acquire_lease("a", ttl=30, now=100)
    assert (first.owner, first.expires_at, first.acquired) == ("a", 130, True)
    refused = await jobs.acquire_lease("b", ttl=30, now=110)
    assert (refused.owner, refused.expires_at, refused.acquired) == ("a", 130, False)
    renewed = await jobs.acquire_lease("a", ttl=30, now=120)
    assert (renewed.owner, renewed.expires_at, renewed.acquired) == ("a", 150, True)
    await jobs.release_lease("b")  # not the holder: nothing happens
    assert not (await jobs.acquire_lease("b", ttl=30, now=121)).acquired
    await jobs.release_lease("a")
    taken = await jobs.acquire_lease("b", ttl=10, now=122)
    assert (taken.owner, taken.expires_at, taken.acquired) == ("b", 132, True)


async def test_expired_lease_can_be_taken(store: Store) -> None:
    await store.jobs.acquire_lease("a", ttl=5, now=100)
    taken = await store.jobs.acquire_lease("b", ttl=5, now=106)
    assert (taken.owner, taken.acquired) == ("b", True)
    assert not (await store.jobs.acquire_lease("a", ttl=5, now=107)).acquired


async def test_database_id_is_stable_and_per_database(store: Store, other_store: Store) -> None:
    first = await store.jobs.database_id()
    assert first
    assert await store.jobs.database_id() == first
    assert await other_store.jobs.database_id() != first


# --- integrity and closing ----------------------------------------------------------


async def _assert_ok(store: Store) -> None:
    assert await store.integrity_check() == "ok"


async def test_deleting_a_document_keeps_its_jobs_consistent(store: Store) -> None:
    ids = await _pending(store, n=2)
    await _job(store, "j1", ids)
    await store.delete_document("doc.md")
    assert await store.jobs.job_chunks("j1") == []
    assert (await store.jobs.snapshot()).pending == 0
    assert await store.jobs.get_job("j1") is not None
    await _assert_ok(store)


async def test_closed_job_store_refuses_every_call(store: Store) -> None:
    ids = await _pending(store, n=1)
    await _job(store, "j1", ids)
    jobs = store.jobs
    await store.aclose()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: jobs.database_id(),
        lambda: jobs.snapshot(),
        lambda: jobs.queued_chunks(),
        lambda: jobs.create_job(job_id="j2", display_name="d2", chunk_ids=ids),
        lambda: jobs.get_job("j1"),
        lambda: jobs.job_chunks("j1"),
        lambda: jobs.transition_job(_change("j1", JobStatus.CREATED, JobStatus.SUBMITTED)),
        lambda: jobs.apply_results("j1", [], retry=RETRY),
        lambda: jobs.jobs(),
        lambda: jobs.mark_cleaned("j1"),
        lambda: jobs.mark_create_attempt("j1", AT + timedelta(seconds=1)),
        lambda: jobs.acquire_lease("a", ttl=1, now=1),
        lambda: jobs.release_lease("a"),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            await call()
