"""Filter operators through SemanticCore on every engine; a malformed filter is refused
before the query is embedded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from asemantic import EmbeddingSpace, GoogleKeyring, InvalidInputError, SemanticCore
from asemantic.domain.documents import JSONValue
from asemantic.testing import LexicalEmbedder
from tests.support import Databases

BOOKS: dict[str, tuple[str, dict[str, JSONValue]]] = {
    "dune.md": ("# Dune\n\nSpice, sand and a desert planet.", {"year": 1965, "lang": "en"}),
    "solaris.md": ("# Solaris\n\nAn ocean planet that thinks.", {"year": 1961, "lang": "pl"}),
    "hyperion.md": ("# Hyperion\n\nPilgrims travel to a planet.", {"year": 1989, "lang": "en"}),
    "notes.md": ("# Notes\n\nA planet list without a year.", {}),
}


@pytest.fixture
def embedder() -> LexicalEmbedder:
    return LexicalEmbedder(EmbeddingSpace(model="lexical-hash-v1", dimensions=256))


@pytest.fixture
async def core(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> AsyncIterator[SemanticCore]:
    target = await databases.target(tmp_path / "kb.db", space=embedder.space)
    async with SemanticCore.open(target, embedder=embedder, keys=GoogleKeyring("k")) as opened:
        yield opened


@pytest.fixture(params=["vector", "keyword", "hybrid"])
def mode(request: pytest.FixtureRequest) -> str:
    """Filters apply alike in every search mode."""
    return str(request.param)


async def _ingest(core: SemanticCore) -> datetime:
    """The books, and an instant between the first two and the others."""
    middle = datetime.min
    for i, (source, (text, metadata)) in enumerate(BOOKS.items()):
        if i == 2:
            await asyncio.sleep(0.005)
            middle = datetime.now(UTC)
            await asyncio.sleep(0.005)
        await core.ingest(text, source=source, metadata=metadata)
    return middle


async def test_search_takes_operators_on_metadata_and_built_in_fields(
    core: SemanticCore, mode: str
) -> None:
    middle = await _ingest(core)

    async def _found(filters: dict[str, object]) -> set[str]:
        hits = await core.search("planet", k=10, filters=filters, mode=mode)
        return {hit.source for hit in hits}

    assert await _found({"year": {"$lt": 1970}}) == {"dune.md", "solaris.md"}
    assert await _found({"year": {"$exists": False}}) == {"notes.md"}
    assert await _found({"lang": {"$ne": "en"}}) == {"solaris.md", "notes.md"}
    assert await _found({"$or": [{"lang": "pl"}, {"year": {"$gt": 1980}}]}) == {
        "solaris.md",
        "hyperion.md",
    }
    assert await _found({"source": {"$nin": ["dune.md", "notes.md"]}, "lang": "en"}) == {
        "hyperion.md"
    }
    assert await _found({"created_at": {"$lt": middle.isoformat()}}) == {
        "dune.md",
        "solaris.md",
    }
    assert await _found({"updated_at": {"$gte": middle}}) == {"hyperion.md", "notes.md"}


@pytest.mark.parametrize(
    ("filters", "operator"),
    [
        ({"year": {"$foo": 1}}, "$foo"),
        ({"year": {"$in": 1965}}, "$in"),
        ({"year": {"$exists": "yes"}}, "$exists"),
        ({"year": {"$gt": {"a": 1}}}, "$gt"),
        ({"$or": []}, "$or"),
        ({"year": {"$gte": 1960, "lang": "en"}}, "$gte"),
        ({"created_at": {"$gt": "2025-01-01"}}, "$gt"),
    ],
)
async def test_a_malformed_filter_is_refused_before_the_query_is_embedded(
    core: SemanticCore,
    embedder: LexicalEmbedder,
    filters: dict[str, object],
    operator: str,
    mode: str,
) -> None:
    await _ingest(core)
    calls = embedder.calls
    with pytest.raises(InvalidInputError) as caught:
        await core.search("planet", filters=filters, mode=mode)
    assert operator in str(caught.value)
    assert embedder.calls == calls  # no embedding request was made
