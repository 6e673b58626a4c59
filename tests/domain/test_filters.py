"""The filter language itself: parsing, refusals naming the operator, the evaluator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from asemantic.domain.documents import JSONValue
from asemantic.domain.filters import (
    MATCH_ALL,
    AnyOf,
    FieldCondition,
    FilterRecord,
    KeyCondition,
    Not,
    evaluate,
    parse_filter,
)
from asemantic.errors import InvalidInputError, UndecodableTextError
from asemantic.ports import SearchFilters

NOON = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def _record(**metadata: JSONValue) -> FilterRecord:
    return FilterRecord(
        document_id=7, source="a.md", created_at=NOON, updated_at=NOON, metadata=metadata
    )


def test_implicit_equality_parses_as_before() -> None:
    assert parse_filter({"lang": "en"}) == KeyCondition("lang", "$eq", "en")
    assert parse_filter({"o": {"a": 1}}) == KeyCondition("o", "$eq", {"a": 1})
    assert parse_filter({"o": {}}) == KeyCondition("o", "$eq", {})
    assert parse_filter({}) == MATCH_ALL
    assert parse_filter({"source": ["a", "b"]}) == FieldCondition("source", "$in", ("a", "b"))


def test_negations_are_not_of_the_positive_test() -> None:
    assert parse_filter({"k": {"$ne": 1}}) == Not(KeyCondition("k", "$eq", 1))
    assert parse_filter({"k": {"$nin": [1]}}) == Not(KeyCondition("k", "$in", (1,)))
    assert parse_filter({"k": {"$exists": False}}) == Not(KeyCondition("k", "$exists", True))
    assert parse_filter({"$or": [{"a": 1}, {"b": 2}]}) == AnyOf(
        (KeyCondition("a", "$eq", 1), KeyCondition("b", "$eq", 2))
    )


def test_times_are_instants_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    for value in (
        "2025-01-31T12:00:00Z",
        "2025-01-31T14:00:00+02:00",
        datetime(2025, 1, 31, 14, 0, tzinfo=plus_two),
    ):
        parsed = parse_filter({"created_at": {"$gte": value}})
        assert parsed == FieldCondition("created_at", "$gte", NOON)
        assert evaluate(parsed, _record())


@pytest.mark.parametrize(
    ("mapping", "matches"),
    [
        ({"n": 1}, {"int", "float"}),
        ({"n": True}, {"true"}),
        ({"n": "1"}, {"text"}),
        ({"n": None}, {"null"}),
        ({"n": {"$ne": None}}, {"int", "float", "true", "text", "list", "missing"}),
        ({"n": {"$gte": 1}}, {"int", "float"}),
        ({"n": {"$gte": "1"}}, {"text"}),
        ({"n": {"$exists": True}}, {"int", "float", "true", "text", "null", "list"}),
        ({"n": [1]}, {"list"}),
        ({"n": {"$in": [1, "1", None]}}, {"int", "float", "text", "null"}),
        ({"n": {"$nin": [1]}}, {"true", "text", "null", "list", "missing"}),
    ],
)
def test_equality_and_ranges_are_json_typed(mapping: dict[str, object], matches: set[str]) -> None:
    stored: dict[str, dict[str, JSONValue]] = {
        "int": {"n": 1},
        "float": {"n": 1.0},
        "true": {"n": True},
        "text": {"n": "1"},
        "null": {"n": None},
        "list": {"n": [1]},
        "missing": {},
    }
    expression = parse_filter(mapping)
    assert {name for name, meta in stored.items() if evaluate(expression, _record(**meta))} == (
        matches
    )


def test_search_filters_keep_their_old_fields() -> None:
    filters = SearchFilters(document_ids=[1], sources=["a.md"], metadata={"k": 1})
    assert filters.restricts
    assert evaluate(filters.expression(), _record(k=1)) is False  # document 7
    assert not SearchFilters().restricts
    assert not SearchFilters.from_mapping({}).restricts
    assert SearchFilters(metadata={"$literal": 1}).expression() == KeyCondition(
        "$literal", "$eq", 1
    )


MALFORMED: list[tuple[dict[str, object], str]] = [
    ({"$foo": 1}, "$foo"),
    ({"year": {"$foo": 1}}, "$foo"),
    ({"year": {"$in": 3}}, "$in"),
    ({"year": {"$nin": "ab"}}, "$nin"),
    ({"year": {"$exists": 1}}, "$exists"),
    ({"year": {"$gt": {"a": 1}}}, "$gt"),
    ({"year": {"$lte": [1]}}, "$lte"),
    ({"year": {"$lt": None}}, "$lt"),
    ({"year": {"$gte": True}}, "$gte"),
    ({"$or": []}, "$or"),
    ({"$or": {"a": 1}}, "$or"),
    ({"$or": [1]}, "$or"),
    ({"$or": [{}]}, "$or"),
    ({"$and": []}, "$and"),
    ({"year": {"$or": [{"a": 1}]}}, "$or"),
    ({"year": {"$gt": 1, "plain": 2}}, "$gt"),
    ({"$gt": 1}, "$gt"),
    ({"source": {"$exists": True}}, "$exists"),
    ({"source": {"$gt": 3}}, "$gt"),
    ({"source": {"$in": ["a", 1]}}, "$in"),
    ({"source": {"$eq": " "}}, "$eq"),
    ({"document_id": {"$eq": "3"}}, "$eq"),
    ({"document_id": {"$in": [1, True]}}, "$in"),
    ({"document_id": {"$ne": 1.0}}, "$ne"),
    ({"created_at": {"$gt": "yesterday"}}, "$gt"),
    ({"created_at": {"$lt": "2025-01-01T00:00:00"}}, "$lt"),
    ({"updated_at": {"$eq": datetime(2025, 1, 1)}}, "$eq"),
    ({"created_at": {"$in": [5]}}, "$in"),
    ({"created_at": {"$exists": True}}, "$exists"),
    ({"year": {"$eq": float("nan")}}, "$eq"),
    ({"year": {"$in": [2**64]}}, "$in"),
    ({"year": {"$eq": {1, 2}}}, "$eq"),
]


@pytest.mark.parametrize(("mapping", "operator"), MALFORMED, ids=[repr(m) for m, _ in MALFORMED])
def test_a_malformed_filter_is_refused_naming_its_operator(
    mapping: dict[str, object], operator: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SearchFilters.from_mapping(mapping)
    assert operator in str(caught.value)


def test_refusals_keep_their_error_class() -> None:
    with pytest.raises(UndecodableTextError):
        parse_filter({"k": {"$in": ["\ud800"]}})
    with pytest.raises(UndecodableTextError):
        parse_filter({"\ud800": 1})
    with pytest.raises(InvalidInputError, match="mapping"):
        parse_filter({"$or": [["a"]]})
