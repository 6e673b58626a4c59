"""Hashes, canonical JSON and metadata validation."""

from __future__ import annotations

import enum
import hashlib
import math
from collections import OrderedDict
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asemantic.domain.documents import Document, JSONValue
from asemantic.domain.hashing import (
    MAX_JSON_DEPTH,
    canonical_json,
    content_hash,
    document_hash,
    short_hash,
    validate_metadata,
)
from asemantic.errors import InvalidInputError, UndecodableTextError


def test_content_hash_is_sha256_of_utf8() -> None:
    assert content_hash("h\u00e9") == hashlib.sha256("h\u00e9".encode()).hexdigest()
    assert len(content_hash("")) == 64
    with pytest.raises(UndecodableTextError):
        content_hash("\ud800")


def test_short_hash() -> None:
    assert short_hash("abc") == content_hash("abc")[:12]
    assert short_hash("abc", 20) == content_hash("abc")[:20]
    for bad in (0, 65):
        with pytest.raises(InvalidInputError):
            short_hash("abc", bad)


DOC = Document(source="s", title="T", text="body", metadata={"a": 1, "b": [1, 2], "c": {"x": None}})


def test_document_hash_is_stable_and_ignores_key_order() -> None:
    same = Document(
        source="other", title="T", text="body", metadata={"c": {"x": None}, "b": [1, 2], "a": 1}
    )
    assert document_hash(DOC, pipeline="p1") == document_hash(same, pipeline="p1")


@pytest.mark.parametrize(
    "changed",
    [
        Document(source="s", title="T2", text="body", metadata=DOC.metadata),
        Document(source="s", title=None, text="body", metadata=DOC.metadata),
        Document(source="s", title="", text="body", metadata=DOC.metadata),
        Document(source="s", title="T", text="body ", metadata=DOC.metadata),
        Document(source="s", title="T", text="body", metadata={**DOC.metadata, "a": 2}),
        Document(source="s", title="T", text="body", metadata={}),
    ],
)
def test_document_hash_changes_with_content(changed: Document) -> None:
    assert document_hash(changed, pipeline="p1") != document_hash(DOC, pipeline="p1")


def test_document_hash_changes_with_the_pipeline() -> None:
    assert document_hash(DOC, pipeline="p1") != document_hash(DOC, pipeline="p2")


def test_fields_cannot_run_together() -> None:
    one = Document(source="s", title="ab", text="c")
    two = Document(source="s", title="a", text="bc")
    assert document_hash(one, pipeline="") != document_hash(two, pipeline="")


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [True, None, 1.5, "\u00e9"]}) == (
        '{"a":[true,null,1.5,"\u00e9"],"b":1}'
    )
    assert canonical_json(("x", 1)) == '["x",1]'


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


def test_enum_values_become_plain_json() -> None:
    assert canonical_json({"c": Colour.RED, "s": Size.BIG}) == '{"c":"red","s":3}'


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1: "x"}, "keys must be str"),
        ({"a": math.nan}, "NaN"),
        ({"a": [math.inf]}, "NaN and infinity"),
        ({"a": {1, 2}}, "set is not a JSON value"),
        ({"a": b"raw"}, "bytes is not a JSON value"),
        ({"a": 2**63}, "64-bit"),
        ({"a": -(2**63) - 1}, "64-bit"),
        ({"a": object()}, "object is not a JSON value"),
        ({"\ud800": 1}, "surrogate"),
        ({"a": "x\udfff"}, "surrogate"),
    ],
)
def test_non_json_is_refused(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        canonical_json(value)


def test_validate_metadata_returns_a_plain_copy() -> None:
    source = MappingProxyType({"tags": ("a", "b"), "nested": OrderedDict(x=1)})
    result = validate_metadata(source)
    assert result == {"tags": ["a", "b"], "nested": {"x": 1}}
    assert type(result["nested"]) is dict
    assert validate_metadata(None) == {}
    assert validate_metadata({"n": 2**63 - 1, "f": -0.5, "b": False}) == {
        "n": 2**63 - 1,
        "f": -0.5,
        "b": False,
    }


def test_validate_metadata_refusals() -> None:
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        validate_metadata(["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"\$\['a'\]\[1\]: NaN"):
        validate_metadata({"a": [1, math.nan]})
    with pytest.raises(InvalidInputError, match="bytes as JSON; the limit is 10"):
        validate_metadata({"long": "x" * 20}, max_bytes=10)


def test_nesting_depth_is_limited_and_cycles_are_caught() -> None:
    deep: JSONValue = "leaf"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    assert validate_metadata({"d": deep[0] if isinstance(deep, list) else deep})
    with pytest.raises(InvalidInputError, match="deeper than"):
        validate_metadata({"d": [deep]})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidInputError, match="deeper than"):
        validate_metadata({"loop": loop})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=5).filter(lambda k: k.isprintable()), JSON, max_size=5))
def test_metadata_round_trips_and_hash_ignores_order(metadata: dict[str, JSONValue]) -> None:
    checked = validate_metadata(metadata)
    assert canonical_json(checked) == canonical_json(metadata)
    reordered = dict(reversed(list(metadata.items())))
    first = document_hash(Document(source="s", text="t", metadata=metadata), pipeline="p")
    assert first == document_hash(Document(source="s", text="t", metadata=reordered), pipeline="p")
