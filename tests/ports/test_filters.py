"""The filter operators on every engine: the same documents match everywhere.

Each case is a filter mapping and the sources it must match in one small corpus. A
hypothesis test then draws random metadata and random filters and checks every engine
against the reference evaluator, :func:`asemantic.domain.filters.evaluate`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asemantic.domain.documents import JSONValue
from asemantic.domain.filters import FilterRecord, evaluate, parse_filter
from asemantic.domain.keywords import query_terms
from asemantic.ports import SearchFilters, Store

from .builders import AXIS, angle, make_write
from .conftest import ENGINES, SPACE, Place

CORPUS: dict[str, dict[str, JSONValue]] = {
    "a.md": {
        "lang": "en",
        "year": 2019,
        "score": 1.5,
        "tags": ["x", "y"],
        "draft": False,
        "owner": None,
    },
    "b.md": {"lang": "de", "year": 2021, "score": 3, "tags": ["y"], "draft": True},
    "c.md": {"lang": "en", "year": 2024, "rank": "b", "word": "Zebra"},
    "d.md": {"lang": "EN", "year": "2022", "rank": "a", "word": "apple"},
    "e.md": {},
    "f.md": {"year": 2021.0, "flag": 1, "nested": {"a": [1, 2]}, "word": "éclair"},
}
ALL = set(CORPUS)


def _but(*sources: str) -> set[str]:
    return ALL - set(sources)


CASES: list[tuple[dict[str, object], set[str]]] = [
    ({}, ALL),
    ({"lang": "en"}, {"a.md", "c.md"}),
    ({"lang": {"$eq": "en"}}, {"a.md", "c.md"}),
    ({"lang": {"$ne": "en"}}, _but("a.md", "c.md")),  # a missing key matches $ne
    ({"lang": {"$in": ["en", "de"]}}, {"a.md", "b.md", "c.md"}),
    ({"lang": {"$nin": ["en", "de"]}}, {"d.md", "e.md", "f.md"}),
    ({"lang": {"$in": []}}, set()),
    ({"lang": {"$nin": []}}, ALL),
    ({"year": {"$gte": 2020, "$lt": 2025}}, {"b.md", "c.md", "f.md"}),  # not "2022"
    ({"year": {"$gt": 2021}}, {"c.md"}),
    ({"year": {"$gte": 2021}}, {"b.md", "c.md", "f.md"}),
    ({"year": {"$lte": 2019}}, {"a.md"}),
    ({"year": {"$gt": 2020.5}}, {"b.md", "c.md", "f.md"}),
    ({"year": {"$gt": "2000"}}, {"d.md"}),  # a string bound: strings only
    ({"year": 2021}, {"b.md", "f.md"}),  # 1 matches 1.0
    ({"year": {"$in": [2021.0, "2022"]}}, {"b.md", "d.md", "f.md"}),
    ({"rank": {"$lt": "b"}}, {"d.md"}),
    ({"rank": {"$gte": "a"}}, {"c.md", "d.md"}),
    ({"word": {"$gt": "a"}}, {"d.md", "f.md"}),  # code point order: "Z" < "a" < "é"
    ({"word": {"$lt": "a"}}, {"c.md"}),
    ({"score": {"$gt": 1.5}}, {"b.md"}),
    ({"score": {"$gte": 1.5}}, {"a.md", "b.md"}),
    ({"draft": {"$exists": True}}, {"a.md", "b.md"}),
    ({"draft": {"$exists": False}}, _but("a.md", "b.md")),
    ({"draft": {"$gt": 0}}, set()),  # booleans are not numbers
    ({"draft": False}, {"a.md"}),
    ({"draft": {"$ne": True}}, _but("b.md")),
    ({"owner": None}, {"a.md"}),
    ({"owner": {"$exists": True}}, {"a.md"}),
    ({"owner": {"$ne": None}}, _but("a.md")),
    ({"flag": True}, set()),
    ({"flag": 1}, {"f.md"}),
    ({"flag": {"$gt": 0}}, {"f.md"}),
    ({"flag": "1"}, set()),
    ({"tags": ["x", "y"]}, {"a.md"}),
    ({"tags": "y"}, set()),  # no element matching
    ({"tags": {"$in": [["y"], ["z"]]}}, {"b.md"}),
    ({"tags": {"$nin": [["y"]]}}, _but("b.md")),
    ({"tags": {"$gt": "a"}}, set()),  # arrays have no order
    ({"nested": {"a": [1, 2]}}, {"f.md"}),
    ({"nested": {"$eq": {"a": [1, 2]}}}, {"f.md"}),
    ({"nested": {"a": [1.0, 2]}}, set()),  # whole, as canonical JSON
    ({"$or": [{"lang": "de"}, {"year": {"$gte": 2024}}]}, {"b.md", "c.md"}),
    ({"$and": [{"lang": "en"}, {"year": {"$lt": 2020}}]}, {"a.md"}),
    ({"$or": [{"source": "e.md"}, {"lang": "en", "year": 2024}]}, {"c.md", "e.md"}),
    (
        {"$or": [{"lang": "en"}, {"lang": "de"}], "tags": {"$exists": True}},
        {"a.md", "b.md"},
    ),
    ({"$or": [{"$or": [{"rank": "a"}, {"flag": 1}]}, {"owner": None}]}, {"a.md", "d.md", "f.md"}),
    ({"source": "a.md"}, {"a.md"}),
    ({"source": ["a.md", "c.md"]}, {"a.md", "c.md"}),
    ({"source": {"$in": ["a.md", "b.md", "zz.md"]}}, {"a.md", "b.md"}),
    ({"source": {"$nin": ["a.md"]}}, _but("a.md")),
    ({"source": {"$ne": "a.md"}, "lang": "en"}, {"c.md"}),
    ({"source": {"$gt": "d.md"}}, {"e.md", "f.md"}),
    ({"source": {"$gte": "b", "$lt": "d"}}, {"b.md", "c.md"}),
    ({"updated_at": {"$gt": "1970-01-01T00:00:00Z"}}, ALL),
    ({"created_at": {"$lt": "1970-01-01T00:00:00+00:00"}}, set()),
]


async def _corpus(store: Store) -> tuple[dict[str, int], datetime]:
    """Write :data:`CORPUS`; the ids by source and an instant between c.md and d.md."""
    ids: dict[str, int] = {}
    middle = datetime.min
    for i, (source, metadata) in enumerate(CORPUS.items()):
        if source == "d.md":
            await asyncio.sleep(0.005)
            middle = datetime.now(UTC)
            await asyncio.sleep(0.005)
        write = make_write(
            source, [f"text of {source}"], vectors={0: angle(5 * i)}, metadata=metadata
        )
        outcome = await store.write_document(write)
        ids[source] = outcome.document_id
    return ids, middle


async def _sources(store: Store, filters: SearchFilters) -> set[str]:
    """The sources a vector search finds under ``filters``; a keyword search for a word
    every chunk holds must find the same ones."""
    hits = await store.search(AXIS, k=50, filters=filters)
    found = {hit.source for hit in hits}
    by_keyword = await store.keyword_search(query_terms("text"), k=50, filters=filters)
    assert {hit.source for hit in by_keyword} == found
    return found


async def test_operators_match_the_same_documents_on_every_engine(store: Store) -> None:
    await _corpus(store)
    wrong = {}
    for mapping, expected in CASES:
        got = await _sources(store, SearchFilters.from_mapping(mapping))
        if got != expected:
            wrong[repr(mapping)] = (sorted(got), sorted(expected))
    assert wrong == {}


async def test_document_ids_and_times_take_every_operator(store: Store) -> None:
    ids, middle = await _corpus(store)
    a, c = ids["a.md"], ids["c.md"]
    early = {"a.md", "b.md", "c.md"}
    cases: list[tuple[dict[str, object], set[str]]] = [
        ({"document_id": a}, {"a.md"}),
        ({"document_id": [a, c]}, {"a.md", "c.md"}),
        ({"document_id": {"$ne": a}}, _but("a.md")),
        ({"document_id": {"$gt": c}}, _but(*early)),
        ({"document_id": {"$lte": c, "$nin": [a]}}, {"b.md", "c.md"}),
        ({"created_at": {"$lt": middle}}, early),
        ({"created_at": {"$gte": middle}}, _but(*early)),
        ({"created_at": {"$lt": middle.isoformat()}}, early),
        ({"updated_at": {"$gt": middle.isoformat().replace("+00:00", "Z")}}, _but(*early)),
        ({"created_at": {"$gt": middle.astimezone(timezone(timedelta(hours=5)))}}, _but(*early)),
        ({"created_at": {"$eq": middle}}, set()),
        ({"created_at": {"$ne": middle}}, ALL),
        ({"$or": [{"created_at": {"$lt": middle}}, {"source": "f.md"}]}, {*early, "f.md"}),
    ]
    wrong = {}
    for mapping, expected in cases:
        got = await _sources(store, SearchFilters.from_mapping(mapping))
        if got != expected:
            wrong[repr(mapping)] = (sorted(got), sorted(expected))
    assert wrong == {}


async def test_the_old_fields_and_where_combine_by_and(store: Store) -> None:
    ids, _ = await _corpus(store)
    filters = SearchFilters(
        sources=["a.md", "b.md", "c.md"],
        metadata={"lang": "en"},
        where=parse_filter({"year": {"$gt": 2020}}),
    )
    assert await _sources(store, filters) == {"c.md"}
    assert await _sources(store, SearchFilters(document_ids=[ids["b.md"]])) == {"b.md"}


async def test_a_filtered_search_still_returns_k_hits(store: Store) -> None:
    """Filters restrict the candidates before ranking: the nearest matching chunks."""
    for i in range(40):
        metadata: dict[str, JSONValue] = {"n": i, "even": i % 2 == 0}
        await store.write_document(
            make_write(f"n{i}.md", [f"n {i}"], vectors={0: angle(i)}, metadata=metadata)
        )
    filters = SearchFilters.from_mapping({"n": {"$gte": 30}, "even": {"$ne": True}})
    hits = await store.search(AXIS, k=3, filters=filters)
    assert [h.source for h in hits] == ["n31.md", "n33.md", "n35.md"]


# ---------------------------------------------------------------- the property test

KEYS = ["a", "b", "c"]
SCALARS: st.SearchStrategy[JSONValue] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-1, 0, 1, 2, 1.0, 0.5, 2.0, -0.0, 10**15, 2**53 + 1]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from(["", "a", "b", "B", "ab", "é", "1", "\uffff", "a b"]),
)
VALUES: st.SearchStrategy[JSONValue] = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), SCALARS, max_size=2),
)
METADATA = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)
ORDERED: st.SearchStrategy[JSONValue] = st.one_of(
    st.sampled_from([-1, 0, 1, 1.0, 0.5, 2, 2**53, "", "a", "b", "B", "é"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


class _Doc:
    """A document id to fill in per engine: the ``index``-th document written."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"doc{self.index}"


class _Mark:
    """An instant to fill in: the ``index``-th mark (between writes)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"mark{self.index}"


def _field_conditions(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["meta", "meta", "meta", "source", "id", "time"]))
    if kind == "meta":
        key = draw(st.sampled_from(KEYS))
        op = draw(st.sampled_from(["=", "$eq", "$ne", "$in", "$nin", "$exists", "range", "range"]))
        if op == "=":
            return {key: draw(VALUES)}
        if op in ("$eq", "$ne"):
            return {key: {op: draw(VALUES)}}
        if op in ("$in", "$nin"):
            return {key: {op: draw(st.lists(VALUES, max_size=3))}}
        if op == "$exists":
            return {key: {op: draw(st.booleans())}}
        ops = draw(
            st.lists(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), min_size=1, max_size=2)
        )
        return {key: {o: draw(ORDERED) for o in ops}}
    if kind == "source":
        names = st.sampled_from(["s0", "s1", "s3", "s5", "s", "t"])
        op = draw(st.sampled_from(["$eq", "$ne", "$in", "$nin", "$gt", "$lte"]))
        value: object = draw(st.lists(names, max_size=3)) if op in ("$in", "$nin") else draw(names)
        return {"source": {op: value}}
    field = "document_id" if kind == "id" else draw(st.sampled_from(["created_at", "updated_at"]))
    make = _Doc if kind == "id" else _Mark
    slots = st.integers(min_value=0, max_value=6).map(make)
    op = draw(st.sampled_from(["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte"]))
    value = draw(st.lists(slots, max_size=3)) if op in ("$in", "$nin") else draw(slots)
    return {field: {op: value}}


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> dict[str, object]:
    """A random filter mapping (with :class:`_Doc` and :class:`_Mark` holes)."""
    out: dict[str, object] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        choice = draw(st.sampled_from(["field", "field", "field", "$or", "$and"]))
        if choice == "field" or depth >= 2:
            for name, condition in _field_conditions(draw).items():
                if name in out:  # a field twice: AND it in through $and
                    out.setdefault("$and", [])
                    cast(list[object], out["$and"]).append({name: condition})
                else:
                    out[name] = condition
        else:
            parts = draw(st.lists(filters(depth + 1), min_size=1, max_size=3))
            cast(list[object], out.setdefault(choice, [])).extend(parts)
    return out


def _fill(value: object, ids: list[int], marks: list[datetime]) -> object:
    if isinstance(value, _Doc):
        return ids[value.index] if value.index < len(ids) else ids[-1] + 100 + value.index
    if isinstance(value, _Mark):
        return marks[min(value.index, len(marks) - 1)]
    if isinstance(value, dict):
        return {k: _fill(v, ids, marks) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids, marks) for v in value]
    return value


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as run:
        yield run


@pytest.fixture
def sync_store(
    engine: str, runner: asyncio.Runner, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Store]:
    """A store of ``engine`` that lives across the examples (run on ``runner``)."""
    place = Place(tmp_path, request)

    async def open_store() -> Store:
        return await ENGINES[engine](place, SPACE)

    opened = runner.run(open_store())
    try:
        yield opened
    finally:
        runner.run(opened.aclose())
        runner.run(place.cleanup())


async def _write_examples(
    store: Store, docs: list[dict[str, JSONValue]]
) -> tuple[list[FilterRecord], list[int], list[datetime]]:
    """Replace the store's documents with ``docs``; their records as the evaluator sees
    them, with stamps anywhere between the marks taken around each write."""
    for snapshot_source in [f"s{i}" for i in range(8)]:
        await store.delete_document(snapshot_source)
    records: list[FilterRecord] = []
    ids: list[int] = []
    marks = [datetime.now(UTC)]
    for i, metadata in enumerate(docs):
        await asyncio.sleep(0.002)
        outcome = await store.write_document(
            make_write(f"s{i}", [f"text {i}"], vectors={0: angle(3 * i)}, metadata=metadata)
        )
        await asyncio.sleep(0.002)
        marks.append(datetime.now(UTC))
        stamp = marks[-1] - timedelta(microseconds=500)  # after the previous mark
        ids.append(outcome.document_id)
        records.append(
            FilterRecord(
                document_id=outcome.document_id,
                source=f"s{i}",
                created_at=stamp,
                updated_at=stamp,
                metadata=metadata,
            )
        )
    return records, ids, marks


EXAMPLES = int(os.environ.get("FILTER_PROPERTY_EXAMPLES", "40"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    docs=st.lists(METADATA, min_size=1, max_size=6),
    drawn=st.lists(filters(), min_size=1, max_size=4),
)
def test_every_engine_matches_the_reference_evaluator(
    runner: asyncio.Runner,
    sync_store: Store,
    docs: list[dict[str, JSONValue]],
    drawn: list[dict[str, object]],
) -> None:
    async def check() -> None:
        records, ids, marks = await _write_examples(sync_store, docs)
        for template in drawn:
            mapping = _fill(template, ids, marks)
            assert isinstance(mapping, dict)
            expression = parse_filter(mapping)
            expected = {r.source for r in records if evaluate(expression, r)}
            got = await _sources(sync_store, SearchFilters.from_mapping(mapping))
            assert got == expected, (template, docs)

    runner.run(check())
