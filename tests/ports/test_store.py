"""The Store contract: documents, chunk reuse, vectors, usage, counts and closing."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from asemantic.domain.documents import Document, EmbeddingStatus, JSONValue
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryPolicy
from asemantic.errors import InvalidInputError, InvalidVectorError, StoreClosedError
from asemantic.ports import DocumentWrite, JobChange, SearchFilters, Store, StoreStats

from .builders import AXIS, angle, chunk_ids, draft, make_write, vec
from .conftest import SPACE

READY, PENDING, FAILED = (s.value for s in EmbeddingStatus)


async def assert_ok(store: Store) -> None:
    assert await store.integrity_check() == "ok"


async def found(store: Store, *, k: int = 50) -> list[int]:
    """The ids of the chunks a search can find (every READY chunk, up to ``k``)."""
    return sorted(hit.chunk_id for hit in await store.search(AXIS, k=k))


# --- documents ----------------------------------------------------------------------


async def test_space_is_the_one_opened_with(store: Store) -> None:
    assert store.space == SPACE


async def test_write_then_get_document(store: Store) -> None:
    write = make_write("doc.md", ["alpha", "beta", "gamma"], vectors={0: angle(10)})
    outcome = await store.write_document(write)
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (3, 0, 0, 2)
    snapshot = await store.get_document("doc.md")
    assert snapshot is not None
    assert snapshot.document_id == outcome.document_id
    assert snapshot.source == "doc.md"
    assert snapshot.content_hash == write.content_hash
    assert [c.position for c in snapshot.chunks] == [0, 1, 2]
    assert [c.content_hash for c in snapshot.chunks] == [d.content_hash for d in write.drafts]
    assert [c.status for c in snapshot.chunks] == [
        EmbeddingStatus.READY,
        EmbeddingStatus.PENDING,
        EmbeddingStatus.PENDING,
    ]
    assert len({c.chunk_id for c in snapshot.chunks}) == 3
    await assert_ok(store)


async def test_unknown_document_is_none(store: Store) -> None:
    assert await store.get_document("nowhere.md") is None


async def test_documents_are_apart(store: Store) -> None:
    first = await store.write_document(make_write("a.md", ["one"]))
    second = await store.write_document(make_write("b.md", ["one"]))
    assert first.document_id != second.document_id
    assert await chunk_ids(store, "a.md") != await chunk_ids(store, "b.md")
    assert (await store.count_chunks_by_status())[PENDING] == 2


async def test_rewrite_unchanged_reuses_every_chunk(store: Store) -> None:
    texts = ["alpha", "beta"]
    await store.write_document(make_write("doc.md", texts, vectors={0: angle(20)}))
    before = await chunk_ids(store, "doc.md")
    outcome = await store.write_document(make_write("doc.md", texts))
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (0, 2, 0, 0)
    assert await chunk_ids(store, "doc.md") == before
    # The READY chunk kept its vector (the rewrite carried none), the PENDING one waits.
    hits = await store.search(AXIS, k=5)
    assert [h.chunk_id for h in hits] == [before[0]]
    assert hits[0].distance == pytest.approx(1 - math.cos(math.radians(20)), abs=1e-5)
    assert await store.count_chunks_by_status() == {READY: 1, PENDING: 1, FAILED: 0}
    await assert_ok(store)


async def test_rewrite_moves_kept_chunks_and_updates_their_position(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a", "b"], vectors={0: vec(1), 1: vec(0, 1)}))
    ids = await chunk_ids(store, "doc.md")
    outcome = await store.write_document(make_write("doc.md", ["b", "a"]))
    assert (outcome.stored, outcome.unchanged, outcome.removed) == (0, 2, 0)
    snapshot = await store.get_document("doc.md")
    assert snapshot is not None
    assert [(c.chunk_id, c.position) for c in snapshot.chunks] == [(ids[1], 0), (ids[0], 1)]
    hits = await store.search(vec(0, 1), k=1)
    assert (hits[0].chunk_id, hits[0].position, hits[0].text) == (ids[1], 0, "b")


async def test_rewrite_removes_dropped_and_changed_chunks_with_their_vectors(
    store: Store,
) -> None:
    await store.write_document(
        make_write("doc.md", ["keep", "drop", "edit"], vectors={0: vec(1), 1: vec(2), 2: vec(3)})
    )
    keep, drop, edit = await chunk_ids(store, "doc.md")
    outcome = await store.write_document(
        make_write("doc.md", ["keep", "edited"], vectors={1: vec(1, 1)})
    )
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (1, 1, 2, 0)
    now = await chunk_ids(store, "doc.md")
    assert now[0] == keep
    assert drop not in now and edit not in now
    ready = await found(store)
    assert keep in ready and now[1] in ready
    assert drop not in ready and edit not in ready
    assert await store.count_chunks_by_status() == {READY: 2, PENDING: 0, FAILED: 0}
    await assert_ok(store)


async def test_new_copy_of_a_ready_chunk_gets_its_vector(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["same"], vectors={0: angle(30)}))
    outcome = await store.write_document(make_write("doc.md", ["same", "same"]))
    assert (outcome.stored, outcome.unchanged, outcome.pending) == (1, 1, 0)
    hits = await store.search(AXIS, k=5)
    assert len(hits) == 2
    assert hits[0].distance == pytest.approx(hits[1].distance, abs=1e-6)
    assert await store.count_chunks_by_status() == {READY: 2, PENDING: 0, FAILED: 0}
    await assert_ok(store)


async def test_failed_chunk_is_not_reused(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["text"]))
    [chunk] = await chunk_ids(store, "doc.md")
    job = await store.jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[chunk])
    assert job is not None
    await store.jobs.transition_job(
        JobChange(
            job_id="j1",
            expected=JobStatus.CREATED,
            to=JobStatus.FAILED,
            at=job.created_at,
            release=RetryPolicy(max_attempts=1),
            release_reason="gave up",
        )
    )
    assert (await store.count_chunks_by_status())[FAILED] == 1
    outcome = await store.write_document(make_write("doc.md", ["text"]))
    assert (outcome.stored, outcome.unchanged, outcome.removed, outcome.pending) == (1, 0, 1, 1)
    assert await chunk_ids(store, "doc.md") != [chunk]
    await assert_ok(store)


async def test_rewrite_updates_title_and_metadata(store: Store) -> None:
    await store.write_document(
        make_write("doc.md", ["x"], vectors={0: vec(1)}, title="Old", metadata={"v": 1})
    )
    await store.write_document(make_write("doc.md", ["x"], title="New", metadata={"v": 2}))
    [hit] = await store.search(AXIS, k=1)
    assert hit.title == "New"
    assert hit.document_metadata == {"v": 2}
    assert await store.search(AXIS, k=1, filters=SearchFilters(metadata={"v": 1})) == []


async def test_delete_document_removes_chunks_and_vectors(store: Store) -> None:
    await store.write_document(make_write("a.md", ["one", "two"], vectors={0: vec(1)}))
    await store.write_document(make_write("b.md", ["three"], vectors={0: vec(1, 1)}))
    [kept] = await chunk_ids(store, "b.md")
    assert await store.delete_document("a.md") is True
    assert await store.get_document("a.md") is None
    assert await found(store) == [kept]
    assert await store.count_chunks_by_status() == {READY: 1, PENDING: 0, FAILED: 0}
    assert await store.delete_document("a.md") is False
    await assert_ok(store)


async def test_deleted_source_can_be_written_again(store: Store) -> None:
    await store.write_document(make_write("a.md", ["one"], vectors={0: vec(1)}))
    await store.delete_document("a.md")
    outcome = await store.write_document(make_write("a.md", ["one"]))
    assert (outcome.stored, outcome.unchanged, outcome.pending) == (1, 0, 1)
    await assert_ok(store)


def _bad_write(case: str) -> DocumentWrite:
    if case == "empty source":
        return make_write("", ["after"])
    base = make_write("doc.md", ["after"])
    if case == "shared position":
        return DocumentWrite(
            document=base.document,
            content_hash=base.content_hash,
            drafts=[draft(0, "a"), draft(0, "b")],
        )
    metadata = cast(dict[str, JSONValue], {"when": object()})
    document = Document(text="after", source="doc.md", metadata=metadata)
    return DocumentWrite(document=document, content_hash=base.content_hash, drafts=base.drafts)


@pytest.mark.parametrize("case", ["empty source", "shared position", "metadata not JSON"])
async def test_bad_write_is_refused_and_changes_nothing(store: Store, case: str) -> None:
    await store.write_document(make_write("doc.md", ["before"], vectors={0: vec(1)}))
    write = _bad_write(case)
    with pytest.raises(InvalidInputError):
        await store.write_document(write)
    snapshot = await store.get_document("doc.md")
    assert snapshot is not None
    assert len(snapshot.chunks) == 1
    assert await store.count_chunks_by_status() == {READY: 1, PENDING: 0, FAILED: 0}
    await assert_ok(store)


# --- vectors ------------------------------------------------------------------------

BAD_BLOBS = {
    "short": vec(1)[:-4],
    "long": vec(1) + b"\x00\x00\x80\x3f",
    "nan": vec(float("nan")),
    "infinity": vec(float("inf")),
    "zero": vec(),
}


@pytest.mark.parametrize("bad", sorted(BAD_BLOBS))
async def test_bad_vector_in_a_write_is_refused_and_nothing_is_written(
    store: Store, bad: str
) -> None:
    write = make_write("doc.md", ["good", "bad"], vectors={0: vec(1), 1: BAD_BLOBS[bad]})
    with pytest.raises(InvalidVectorError):
        await store.write_document(write)
    assert await store.get_document("doc.md") is None
    assert await store.count_chunks_by_status() == {READY: 0, PENDING: 0, FAILED: 0}
    await assert_ok(store)


@pytest.mark.parametrize("bad", sorted(BAD_BLOBS))
async def test_bad_vector_in_a_bulk_update_is_refused_and_nothing_is_written(
    store: Store, bad: str
) -> None:
    await store.write_document(make_write("doc.md", ["a", "b"]))
    first, second = await chunk_ids(store, "doc.md")
    with pytest.raises(InvalidVectorError):
        await store.bulk_update_vectors({first: vec(1), second: BAD_BLOBS[bad]})
    assert await store.count_chunks_by_status() == {READY: 0, PENDING: 2, FAILED: 0}
    assert await found(store) == []
    await assert_ok(store)


async def test_vector_must_be_bytes(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a"]))
    [chunk] = await chunk_ids(store, "doc.md")
    with pytest.raises(InvalidVectorError):
        await store.bulk_update_vectors({chunk: "not a blob"})  # type: ignore[dict-item]
    assert (await store.count_chunks_by_status())[PENDING] == 1


async def test_bulk_update_vectors_makes_chunks_ready(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a", "b", "c"]))
    a, b, c = await chunk_ids(store, "doc.md")
    assert await store.bulk_update_vectors({a: angle(0), b: angle(60)}) == 2
    snapshot = await store.get_document("doc.md")
    assert snapshot is not None
    assert [ch.status for ch in snapshot.chunks] == [
        EmbeddingStatus.READY,
        EmbeddingStatus.READY,
        EmbeddingStatus.PENDING,
    ]
    assert [h.chunk_id for h in await store.search(AXIS, k=5)] == [a, b]
    assert c not in await found(store)
    await assert_ok(store)


async def test_bulk_update_vectors_is_idempotent_and_replaces(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a"]))
    [chunk] = await chunk_ids(store, "doc.md")
    assert await store.bulk_update_vectors({chunk: angle(45)}) == 1
    assert await store.bulk_update_vectors({chunk: angle(45)}) == 1
    hits = await store.search(AXIS, k=5)
    assert [h.chunk_id for h in hits] == [chunk]
    await assert_ok(store)
    assert await store.bulk_update_vectors({chunk: angle(90)}) == 1
    [hit] = await store.search(AXIS, k=5)
    assert hit.distance == pytest.approx(1.0, abs=1e-5)
    await assert_ok(store)


async def test_bulk_update_vectors_skips_unknown_ids(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a"]))
    [chunk] = await chunk_ids(store, "doc.md")
    assert await store.bulk_update_vectors({chunk + 1000: vec(1), chunk: vec(1)}) == 1
    assert await store.bulk_update_vectors({chunk + 1000: vec(1)}) == 0
    assert await store.bulk_update_vectors({}) == 0
    assert await found(store) == [chunk]
    await assert_ok(store)


# --- usage and counts ---------------------------------------------------------------


async def test_count_chunks_by_status_has_every_status(store: Store) -> None:
    assert await store.count_chunks_by_status() == {READY: 0, PENDING: 0, FAILED: 0}
    await store.write_document(make_write("doc.md", ["a", "b", "c"], vectors={1: vec(1)}))
    assert await store.count_chunks_by_status() == {READY: 1, PENDING: 2, FAILED: 0}


async def test_stats_of_an_empty_store(store: Store) -> None:
    stats = await store.stats()
    assert isinstance(stats, StoreStats)
    assert stats.empty
    assert stats.documents == 0
    assert stats.chunks == {READY: 0, PENDING: 0, FAILED: 0}
    assert stats.jobs == {status.value: 0 for status in JobStatus}
    assert stats.tokens == {"online": 0, "batch": 0, "query": 0}


async def test_stats_count_documents_chunks_and_jobs(store: Store) -> None:
    await store.write_document(make_write("a.md", ["x", "y"], vectors={0: vec(1)}))
    await store.write_document(make_write("b.md", ["z"]))
    [z] = await chunk_ids(store, "b.md")
    await store.jobs.create_job(job_id="j1", display_name="d1", chunk_ids=[z])
    stats = await store.stats()
    assert not stats.empty
    assert stats.documents == 2
    assert stats.chunks == {READY: 1, PENDING: 2, FAILED: 0}
    assert stats.jobs == {**{status.value: 0 for status in JobStatus}, "CREATED": 1}


async def test_usage_totals_per_route(store: Store) -> None:
    await store.record_usage("online", texts=2, tokens=10)
    await store.record_usage("online", texts=1, tokens=5)
    await store.record_usage("query", texts=1, tokens=3)
    await store.record_usage("batch", texts=0, tokens=0)  # nothing to record
    tokens = (await store.stats()).tokens
    assert tokens.get("online", 0) == 15
    assert tokens.get("query", 0) == 3
    assert tokens.get("batch", 0) == 0
    await assert_ok(store)


async def test_integrity_ok_on_an_empty_store(store: Store) -> None:
    await assert_ok(store)


# --- closing ------------------------------------------------------------------------


async def test_aclose_is_idempotent(store: Store) -> None:
    await store.aclose()
    await store.aclose()


async def test_closed_store_refuses_every_call(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a"]))
    await store.aclose()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get_document("doc.md"),
        lambda: store.write_document(make_write("doc.md", ["b"])),
        lambda: store.delete_document("doc.md"),
        lambda: store.bulk_update_vectors({1: vec(1)}),
        lambda: store.search(AXIS, k=1),
        lambda: store.record_usage("online", texts=1, tokens=1),
        lambda: store.count_chunks_by_status(),
        lambda: store.integrity_check(),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            await call()


async def test_closed_store_refuses_stats(store: Store) -> None:
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await store.stats()
