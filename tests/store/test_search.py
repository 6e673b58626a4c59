"""Search: ranking, distances, filters that never return fewer than k, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.documents import JSONValue
from asemantic.errors import InvalidInputError, InvalidVectorError
from asemantic.ports import SearchFilters
from asemantic.testing import LexicalEmbedder

from .helpers import make_write, raw

CORPUS: dict[str, list[str]] = {
    "cats.md": [
        "Cats purr when they are content and sleep in the sun",
        "A cat grooms its fur with a rough tongue",
    ],
    "dogs.md": [
        "Dogs bark at strangers and guard the house",
        "A dog wags its tail when happy",
    ],
    "bread.md": [
        "Knead the dough and let the bread rise overnight",
        "Bake the loaf in a hot oven until the crust is brown",
    ],
}
METADATA: dict[str, dict[str, JSONValue]] = {
    "cats.md": {"kind": "animal", "legs": 4, "pet": True, "tags": ["fur", "purr"]},
    "dogs.md": {"kind": "animal", "legs": 4.0, "pet": True, "owner": None},
    "bread.md": {"kind": "recipe", "legs": 0, "pet": False, "tags": {"a": 1, "b": [2]}},
}


@pytest.fixture(params=[True, False], ids=["knn-prefilter", "exact-scan"])
async def corpus(
    request: pytest.FixtureRequest, store: SqliteStore, embedder: LexicalEmbedder
) -> SqliteStore:
    store._prefilter = bool(request.param)
    for source, texts in CORPUS.items():
        await store.write_document(
            make_write(source, texts, embedder=embedder, metadata=METADATA[source])
        )
    return store


def _cosine_distance(a: bytes, b: bytes) -> float:
    x = np.frombuffer(a, dtype="<f4").astype(np.float64)
    y = np.frombuffer(b, dtype="<f4").astype(np.float64)
    return float(1.0 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


async def test_documents_sharing_words_rank_first(
    corpus: SqliteStore, embedder: LexicalEmbedder
) -> None:
    query = embedder.vector("why do cats purr in the sun")
    hits = await corpus.search(query, k=6)
    assert len(hits) == 6
    assert hits[0].source == "cats.md"
    assert hits[0].position == 0
    assert hits[0].text == CORPUS["cats.md"][0]
    assert hits[0].document_metadata == METADATA["cats.md"]
    assert hits[0].heading_path == ()
    distances = [h.distance for h in hits if h.distance is not None]
    assert len(distances) == len(hits) and distances == sorted(distances)
    for hit in hits:
        expected = _cosine_distance(query, embedder.vector(hit.text))
        assert hit.distance == pytest.approx(expected, abs=1e-5)
    bread = await corpus.search(embedder.vector("bake bread in the oven"), k=2)
    assert {h.source for h in bread} == {"bread.md"}


async def test_k_limits_the_hits(corpus: SqliteStore, embedder: LexicalEmbedder) -> None:
    assert len(await corpus.search(embedder.vector("dog"), k=1)) == 1
    assert len(await corpus.search(embedder.vector("dog"), k=100)) == 6


async def test_pending_chunks_are_never_returned(
    store: SqliteStore, embedder: LexicalEmbedder
) -> None:
    words = "zebra stripes savanna"
    await store.write_document(make_write("p.md", [words, words + " herd"]))  # PENDING
    await store.write_document(make_write("r.md", ["unrelated text"], embedder=embedder))
    query = embedder.vector(words)
    for filters in (None, SearchFilters(sources=["p.md", "r.md"])):
        hits = await store.search(query, k=10, filters=filters)
        assert [h.source for h in hits] == ["r.md"]


@pytest.mark.parametrize(
    ("filters", "sources"),
    [
        (SearchFilters(sources=["dogs.md"]), {"dogs.md"}),
        (SearchFilters(sources=["dogs.md", "bread.md"]), {"dogs.md", "bread.md"}),
        (SearchFilters(document_ids=[3]), {"bread.md"}),
        (SearchFilters(document_ids=[]), set()),
        (SearchFilters(metadata={"kind": "animal"}), {"cats.md", "dogs.md"}),
        (SearchFilters(metadata={"legs": 4}), {"cats.md", "dogs.md"}),
        (SearchFilters(metadata={"legs": 0}), {"bread.md"}),
        (SearchFilters(metadata={"pet": True}), {"cats.md", "dogs.md"}),
        (SearchFilters(metadata={"pet": False}), {"bread.md"}),
        (SearchFilters(metadata={"pet": 1}), set()),
        (SearchFilters(metadata={"owner": None}), {"dogs.md"}),
        (SearchFilters(metadata={"tags": ["fur", "purr"]}), {"cats.md"}),
        (SearchFilters(metadata={"tags": {"b": [2], "a": 1}}), {"bread.md"}),
        (SearchFilters(metadata={"kind": "animal", "legs": 4}, sources=["cats.md"]), {"cats.md"}),
        (SearchFilters(metadata={"kind": "recipe", "pet": True}), set()),
        (SearchFilters(metadata={"missing": "x"}), set()),
        (SearchFilters.from_mapping({"source": "cats.md", "kind": "animal"}), {"cats.md"}),
    ],
)
async def test_filters(
    corpus: SqliteStore,
    embedder: LexicalEmbedder,
    filters: SearchFilters,
    sources: set[str],
) -> None:
    hits = await corpus.search(embedder.vector("cats dogs bread"), k=6, filters=filters)
    assert {h.source for h in hits} == sources
    assert len(hits) == sum(len(CORPUS[s]) for s in sources)


@pytest.mark.parametrize("prefilter", [True, False], ids=["knn-prefilter", "exact-scan"])
async def test_filtered_search_returns_k_when_k_match(
    store: SqliteStore, embedder: LexicalEmbedder, prefilter: bool
) -> None:
    """The matching chunks are far from the query: a post-filtered global top-k would
    hold none of them."""
    store._prefilter = prefilter
    near = [f"solar panel energy output {i}" for i in range(60)]
    for n in range(5):
        await store.write_document(
            make_write(
                f"near-{n}",
                near[n * 12 : (n + 1) * 12],
                embedder=embedder,
                metadata={"group": "near"},
            )
        )
    far = [f"medieval castle tapestry number {i}" for i in range(8)]
    await store.write_document(make_write("far", far, embedder=embedder, metadata={"group": "far"}))
    query = embedder.vector("solar panel energy output")
    top = await store.search(query, k=5)
    assert all(h.source.startswith("near") for h in top)
    for filters in (
        SearchFilters(sources=["far"]),
        SearchFilters(metadata={"group": "far"}),
        SearchFilters(document_ids=[6]),
    ):
        hits = await store.search(query, k=5, filters=filters)
        assert len(hits) == 5
        assert {h.source for h in hits} == {"far"}
        expected = sorted((_cosine_distance(query, embedder.vector(t)), t) for t in far)[:5]
        assert [h.distance for h in hits] == pytest.approx([d for d, _ in expected], abs=1e-5)
        more = await store.search(query, k=50, filters=filters)
        assert len(more) == len(far)


async def test_filter_strategies_agree(store: SqliteStore, embedder: LexicalEmbedder) -> None:
    rng = np.random.default_rng(5)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]
    for d in range(12):
        texts = [" ".join(rng.choice(words, size=5)) + f" {d} {i}" for i in range(15)]
        await store.write_document(
            make_write(f"doc-{d}", texts, embedder=embedder, metadata={"parity": d % 2})
        )
    query = embedder.vector("alpha gamma omega")
    operators = {"$or": [{"parity": 1}, {"source": "doc-0"}], "source": {"$ne": "doc-3"}}
    for filters, allowed in (
        (SearchFilters(metadata={"parity": 1}), range(1, 12, 2)),
        (SearchFilters.from_mapping(operators), [0, 1, 5, 7, 9, 11]),
    ):
        store._prefilter = True
        knn = await store.search(query, k=20, filters=filters)
        store._prefilter = False
        scan = await store.search(query, k=20, filters=filters)
        # Equal texts tie; distances (not ids among ties) must agree.
        assert [h.distance for h in knn] == pytest.approx([h.distance for h in scan], abs=1e-6)
        assert len(knn) == 20
        assert {h.source for h in knn} <= {f"doc-{d}" for d in allowed}


@pytest.mark.parametrize("k", [0, -1, 1001, True, 2.5, "3"])
async def test_bad_k(corpus: SqliteStore, embedder: LexicalEmbedder, k: object) -> None:
    with pytest.raises(InvalidInputError, match="k must"):
        await corpus.search(embedder.vector("x"), k=k)  # type: ignore[arg-type]


async def test_bad_query_vector(corpus: SqliteStore) -> None:
    with pytest.raises(InvalidVectorError):
        await corpus.search(b"\x00\x00\x80\x3f" * 10, k=3)
    with pytest.raises(InvalidVectorError):
        await corpus.search(b"\x00" * (256 * 4), k=3)


async def test_empty_store_finds_nothing(store: SqliteStore, embedder: LexicalEmbedder) -> None:
    assert await store.search(embedder.vector("anything"), k=5) == []


async def test_hits_carry_heading_and_title(
    store: SqliteStore, db_path: Path, embedder: LexicalEmbedder
) -> None:
    await store.write_document(
        make_write("h.md", ["volcano lava eruption"], embedder=embedder, title="Geology")
    )
    with raw(db_path) as conn:
        conn.execute(
            "UPDATE chunks SET meta_json = json_set(meta_json, '$.heading_path', "
            "json_array('Earth', 'Volcanoes'))"
        )
    hit = (await store.search(embedder.vector("lava"), k=1))[0]
    assert hit.title == "Geology"
    assert hit.heading_path == ("Earth", "Volcanoes")
    assert hit.document_id == 1


async def test_store_probes_knn_prefiltering(store: SqliteStore) -> None:
    assert store._prefilter is True  # sqlite-vec 0.1.9 on a recent SQLite


async def test_scan_is_used_when_the_probe_fails(
    db_path: Path, embedder: LexicalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asemantic.adapters.sqlite import schema as schema_module

    async def never(*args: object) -> bool:
        return False

    monkeypatch.setattr(schema_module, "knn_prefilter_works", never)
    async with await SqliteStore.open(db_path, space=embedder.space) as store:
        assert store._prefilter is False
        await store.write_document(make_write("a", ["red fox", "red hen"], embedder=embedder))
        await store.write_document(make_write("b", ["blue sky"], embedder=embedder))
        hits = await store.search(
            embedder.vector("red fox"), k=1, filters=SearchFilters(sources=["b"])
        )
        assert [h.source for h in hits] == ["b"]


async def test_filtered_search_reads_the_partial_index(
    corpus: SqliteStore, embedder: LexicalEmbedder
) -> None:
    """The matching chunk ids come from chunks_ready_document, not the wide rows."""
    from asemantic.adapters.sqlite.search import build_search

    sql, params = build_search(
        embedder.vector("x"),
        k=3,
        filters=SearchFilters(sources=["cats.md"]),
        prefilter=corpus._prefilter,
    )
    plan = " | ".join(
        str(row[-1]) for row in await corpus.fetchall("EXPLAIN QUERY PLAN " + sql, params)
    )
    assert "COVERING INDEX chunks_ready_document" in plan
