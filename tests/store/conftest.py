"""Fixtures: a real SQLite file with sqlite-vec in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asemantic.adapters.sqlite import SqliteStore
from asemantic.domain.space import EmbeddingSpace
from asemantic.testing import LexicalEmbedder


@pytest.fixture
def embedder() -> LexicalEmbedder:
    return LexicalEmbedder(EmbeddingSpace(model="lexical-hash-v1", dimensions=256))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kb.db"


@pytest.fixture
async def store(db_path: Path, embedder: LexicalEmbedder) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(db_path, space=embedder.space)
    try:
        yield opened
    finally:
        await opened.aclose()
