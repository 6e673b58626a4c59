"""The search contract: order, distances, ties, k, filters and what a hit carries."""

from __future__ import annotations

from typing import cast

import pytest

from asemantic.domain.documents import JSONValue
from asemantic.errors import InvalidInputError, InvalidVectorError
from asemantic.ports import SearchFilters, Store

from .builders import AXIS, angle, chunk_ids, cosine_distance, make_write, vec

ANGLES = [50, 10, 80, 30]


async def _fan(store: Store) -> list[int]:
    """One document whose chunks point ``ANGLES`` degrees away from axis 0."""
    texts = [f"chunk at {a}" for a in ANGLES]
    vectors = {i: angle(a, scale=1 + i) for i, a in enumerate(ANGLES)}
    await store.write_document(make_write("fan.md", texts, vectors=vectors))
    return await chunk_ids(store, "fan.md")


async def test_nearest_first_with_cosine_distances(store: Store) -> None:
    ids = await _fan(store)
    hits = await store.search(AXIS, k=4)
    by_angle = sorted(range(len(ANGLES)), key=lambda i: ANGLES[i])
    assert [h.chunk_id for h in hits] == [ids[i] for i in by_angle]
    for hit, i in zip(hits, by_angle, strict=True):
        assert hit.distance == pytest.approx(cosine_distance(ANGLES[i]), abs=1e-5)


async def test_distance_ignores_the_query_length(store: Store) -> None:
    await _fan(store)
    short = await store.search(AXIS, k=4)
    long = await store.search(vec(7.5), k=4)
    assert [h.chunk_id for h in short] == [h.chunk_id for h in long]
    assert [h.distance for h in long] == pytest.approx([h.distance for h in short], abs=1e-6)


async def test_opposite_vector_is_at_distance_two(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["away"], vectors={0: vec(-3)}))
    [hit] = await store.search(AXIS, k=1)
    assert hit.distance == pytest.approx(2.0, abs=1e-5)


async def test_k_limits_the_hits_to_the_nearest(store: Store) -> None:
    ids = await _fan(store)
    hits = await store.search(AXIS, k=2)
    assert [h.chunk_id for h in hits] == [ids[1], ids[3]]  # 10 and 30 degrees


async def test_k_above_the_chunk_count_returns_every_ready_chunk(store: Store) -> None:
    ids = await _fan(store)
    await store.write_document(make_write("pending.md", ["no vector"]))
    hits = await store.search(AXIS, k=1000)
    assert sorted(h.chunk_id for h in hits) == sorted(ids)


async def test_ties_are_broken_by_chunk_id(store: Store) -> None:
    texts = [f"twin {i}" for i in range(6)]
    await store.write_document(
        make_write("twins.md", texts, vectors={i: angle(40) for i in range(6)})
    )
    ids = await chunk_ids(store, "twins.md")
    hits = await store.search(AXIS, k=3)
    assert [h.chunk_id for h in hits] == sorted(ids)[:3]
    assert len({round(h.distance or 0.0, 6) for h in hits}) == 1


async def test_ties_at_the_k_boundary_keep_the_lowest_ids(store: Store) -> None:
    texts = [f"twin {i}" for i in range(300)]
    await store.write_document(
        make_write("twins.md", texts, vectors={i: angle(40) for i in range(300)})
    )
    ids = await chunk_ids(store, "twins.md")
    assert [h.chunk_id for h in await store.search(AXIS, k=5)] == sorted(ids)[:5]


async def test_nearer_rows_first_then_the_lowest_ids_of_those_tied_at_k(store: Store) -> None:
    texts = [f"twin {i}" for i in range(300)]
    vectors = {i: angle(40) for i in range(300)}
    vectors[250] = vectors[299] = angle(10)  # two nearer rows among the twins
    await store.write_document(make_write("twins.md", texts, vectors=vectors))
    ids = sorted(await chunk_ids(store, "twins.md"))
    hits = [h.chunk_id for h in await store.search(AXIS, k=5)]
    assert hits == [ids[250], ids[299], ids[0], ids[1], ids[2]]


async def test_an_empty_store_finds_nothing(store: Store) -> None:
    assert await store.search(AXIS, k=5) == []


@pytest.mark.parametrize("k", [0, -1, 1001, True, 2.0, "3"])
async def test_k_out_of_bounds_is_refused(store: Store, k: object) -> None:
    with pytest.raises(InvalidInputError):
        await store.search(AXIS, k=cast(int, k))


async def test_k_of_a_thousand_is_accepted(store: Store) -> None:
    await _fan(store)
    assert len(await store.search(AXIS, k=1000)) == len(ANGLES)


@pytest.mark.parametrize(
    "query", [vec(1)[:-4], vec(float("nan")), vec(), b""], ids=["short", "nan", "zero", "empty"]
)
async def test_bad_query_vector_is_refused(store: Store, query: bytes) -> None:
    with pytest.raises(InvalidVectorError):
        await store.search(query, k=1)


async def test_hit_carries_the_chunk_and_its_document(store: Store) -> None:
    write = make_write(
        "guide.md",
        ["intro", "body"],
        vectors={1: vec(1)},
        title="Guide",
        metadata={"lang": "en", "tags": ["a", "b"]},
        heading=("Part", "Section"),
    )
    outcome = await store.write_document(write)
    [hit] = await store.search(AXIS, k=5)
    assert hit.chunk_id == (await chunk_ids(store, "guide.md"))[1]
    assert hit.document_id == outcome.document_id
    assert hit.source == "guide.md"
    assert hit.title == "Guide"
    assert hit.text == "body"
    assert hit.position == 1
    assert hit.heading_path == ("Part", "Section")
    assert dict(hit.document_metadata) == {"lang": "en", "tags": ["a", "b"]}


async def test_search_sees_each_write_at_once(store: Store) -> None:
    await store.write_document(make_write("doc.md", ["a", "b"]))
    a, b = await chunk_ids(store, "doc.md")
    assert await store.search(AXIS, k=5) == []
    await store.bulk_update_vectors({a: angle(20)})
    assert [h.chunk_id for h in await store.search(AXIS, k=5)] == [a]
    await store.bulk_update_vectors({b: angle(5)})
    assert [h.chunk_id for h in await store.search(AXIS, k=5)] == [b, a]
    await store.delete_document("doc.md")
    assert await store.search(AXIS, k=5) == []


# --- filters ------------------------------------------------------------------------


async def _library(store: Store) -> dict[str, list[int]]:
    """Three documents; ``near.md`` is nearest the query, ``far.md`` farthest."""
    layout: list[tuple[str, int, dict[str, JSONValue]]] = [
        ("near.md", 5, {"lang": "en", "year": 2024, "draft": True, "tags": ["x"], "rank": 1}),
        (
            "middle.md",
            40,
            {"lang": "fr", "year": 2023.0, "draft": False, "owner": None, "rank": True},
        ),
        ("far.md", 85, {"lang": "en", "year": "2024", "tags": ["x", "y"], "meta": {"a": 1}}),
    ]
    ids: dict[str, list[int]] = {}
    for source, degrees, metadata in layout:
        texts = [f"{source} {i}" for i in range(3)]
        vectors = {i: angle(degrees + i) for i in range(3)}
        await store.write_document(
            make_write(source, texts, vectors=vectors, metadata=metadata, title=source)
        )
        ids[source] = await chunk_ids(store, source)
    return ids


async def _sources(store: Store, filters: SearchFilters, *, k: int = 20) -> list[str]:
    return [hit.source for hit in await store.search(AXIS, k=k, filters=filters)]


async def test_filter_returns_k_whenever_k_chunks_match(store: Store) -> None:
    ids = await _library(store)
    hits = await store.search(AXIS, k=2, filters=SearchFilters(sources=["far.md"]))
    assert [h.chunk_id for h in hits] == ids["far.md"][:2]


async def test_filter_by_document_ids(store: Store) -> None:
    await _library(store)
    middle = await store.get_document("middle.md")
    far = await store.get_document("far.md")
    assert middle is not None and far is not None
    filters = SearchFilters(document_ids=[far.document_id, middle.document_id])
    assert await _sources(store, filters) == ["middle.md"] * 3 + ["far.md"] * 3


async def test_filter_by_sources(store: Store) -> None:
    await _library(store)
    filters = SearchFilters(sources=["far.md", "near.md", "unknown.md"])
    assert await _sources(store, filters) == ["near.md"] * 3 + ["far.md"] * 3


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"lang": "en"}, ["near.md", "far.md"]),
        ({"lang": "de"}, []),
        ({"year": 2024}, ["near.md"]),  # the string "2024" is not the number
        ({"year": 2023}, ["middle.md"]),  # 2023 equals 2023.0
        ({"year": "2024"}, ["far.md"]),
        ({"draft": True}, ["near.md"]),
        ({"draft": False}, ["middle.md"]),
        ({"owner": None}, ["middle.md"]),  # an explicit null only
        ({"rank": 1}, ["near.md"]),  # true is not the number 1
        ({"rank": True}, ["middle.md"]),
        ({"rank": "1"}, []),
        ({"tags": ["x"]}, ["near.md"]),
        ({"tags": ["x", "y"]}, ["far.md"]),
        ({"tags": ["y", "x"]}, []),
        ({"meta": {"a": 1}}, ["far.md"]),
        ({"lang": "en", "draft": True}, ["near.md"]),
        ({"missing": "key"}, []),
    ],
)
async def test_filter_by_metadata(
    store: Store, metadata: dict[str, JSONValue], expected: list[str]
) -> None:
    await _library(store)
    sources = await _sources(store, SearchFilters(metadata=metadata))
    assert list(dict.fromkeys(sources)) == expected
    assert len(sources) == 3 * len(expected)


async def test_filters_combine_with_and(store: Store) -> None:
    await _library(store)
    filters = SearchFilters(sources=["near.md", "middle.md"], metadata={"lang": "en"})
    assert set(await _sources(store, filters)) == {"near.md"}


async def test_empty_filters_are_no_filter(store: Store) -> None:
    await _library(store)
    everything = await store.search(AXIS, k=20)
    assert await store.search(AXIS, k=20, filters=SearchFilters()) == everything
    assert await store.search(AXIS, k=20, filters=SearchFilters(metadata={})) == everything


async def test_empty_lists_match_nothing(store: Store) -> None:
    await _library(store)
    assert await _sources(store, SearchFilters(sources=[])) == []
    assert await _sources(store, SearchFilters(document_ids=[])) == []


async def test_filter_leaves_out_pending_chunks(store: Store) -> None:
    await _library(store)
    await store.write_document(make_write("pending.md", ["waiting"], metadata={"lang": "en"}))
    assert "pending.md" not in await _sources(store, SearchFilters(metadata={"lang": "en"}))


async def test_filter_from_mapping(store: Store) -> None:
    await _library(store)
    filters = SearchFilters.from_mapping({"source": ["middle.md", "far.md"], "lang": "en"})
    assert set(await _sources(store, filters)) == {"far.md"}


async def test_metadata_filter_must_be_json(store: Store) -> None:
    await _library(store)
    filters = SearchFilters(metadata=cast(dict[str, JSONValue], {"lang": object()}))
    with pytest.raises(InvalidInputError):
        await store.search(AXIS, k=3, filters=filters)
