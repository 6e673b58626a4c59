"""The hot read statements use the plans their speed depends on.

Plans, not timings: an ``IN (SELECT value FROM json_each(?))`` on ``chunks`` next to an
``embedding_status`` condition lets SQLite walk the status index over every READY chunk
(15 ms a search at 100,000 chunks instead of ten lookups), and ``MIN(seq), MAX(seq)`` in
one select scans the whole vector log before every search. Both regressions happened;
these checks catch them without a clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asemantic.adapters.sqlite import SqliteStore, memory_index
from asemantic.adapters.sqlite.search import HYDRATE, matching_documents_sql
from asemantic.ports import SearchFilters
from tests.store.test_memindex import fill, open_store


async def plan(store: SqliteStore, sql: str, params: tuple[object, ...] = ()) -> list[str]:
    rows = await store.fetchall("EXPLAIN QUERY PLAN " + sql, params)
    return [str(row[-1]) for row in rows]


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await open_store(tmp_path / "plans.db")
    try:
        await fill(store, docs=4, per_doc=5)
        yield store
    finally:
        await store.aclose()


def _by_primary_key(details: list[str], alias: str) -> bool:
    return any(d.startswith(f"SEARCH {alias} USING INTEGER PRIMARY KEY") for d in details)


async def test_hydrating_hits_looks_chunks_up_by_id(filled: SqliteStore) -> None:
    details = await plan(filled, HYDRATE, (json.dumps([1, 2, 3]),))
    assert _by_primary_key(details, "c"), details
    assert not any("chunks_status_job" in d or d.startswith("SCAN c") for d in details), details


async def test_reading_changed_vectors_looks_chunks_up_by_id(filled: SqliteStore) -> None:
    details = await plan(filled, memory_index._CHANGED, (json.dumps([1, 2, 3]),))
    assert _by_primary_key(details, "c"), details
    assert not any("chunks_status_job" in d or d.startswith("SCAN c") for d in details), details


async def test_the_log_check_before_each_search_does_not_scan_the_log(
    filled: SqliteStore,
) -> None:
    details = await plan(filled, memory_index._LOG_BOUNDS)
    assert details, "no plan"
    assert not any(d.startswith("SCAN vector_log") for d in details), details


async def test_the_log_delta_reads_a_range_of_the_log(filled: SqliteStore) -> None:
    details = await plan(filled, memory_index._LOG_DELTA, (0, 10))
    assert any("vector_log USING INTEGER PRIMARY KEY" in d for d in details), details
    assert not any(d.startswith("SCAN vector_log") for d in details), details


async def test_a_filter_reads_documents_only(filled: SqliteStore) -> None:
    for filters in (
        SearchFilters(document_ids=[2]),
        SearchFilters(sources=["doc1"]),
        SearchFilters(metadata={"g": 1}),
        SearchFilters.from_mapping({"$or": [{"g": {"$gte": 1}}, {"source": {"$ne": "doc1"}}]}),
        SearchFilters.from_mapping({"created_at": {"$gt": "2025-01-01T00:00:00Z"}}),
    ):
        sql, params = matching_documents_sql(filters)
        details = await plan(filled, sql, tuple(params))
        assert not any("chunks" in d for d in details), details
    sql, params = matching_documents_sql(SearchFilters(document_ids=[2]))
    assert _by_primary_key(await plan(filled, sql, tuple(params)), "d")
