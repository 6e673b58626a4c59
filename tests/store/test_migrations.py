"""Upgrading version-0 files in place, refusing newer ones, and interrupted upgrades."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from asemantic.adapters.sqlite import (
    CURRENT_VERSION,
    SqliteStore,
    ensure_schema_compatibility,
    open_connection,
)
from asemantic.adapters.sqlite import schema as schema_module
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.keywords import query_terms
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import SchemaVersionError
from asemantic.testing import LexicalEmbedder
from tests.legacy_schema import V0_DDL, V0_TABLES_DDL

from .helpers import draft, make_write, raw, scalar, statuses, vector_ids

V0_SPACE = EmbeddingSpace(model="gemini-embedding-001", dimensions=768)
V0_TEXTS = {
    "garden.md": ["Tomatoes need sun and water", "Prune the roses in early spring"],
    "sea.md": ["Waves crash on the rocky shore", "Sailors read the tides and stars"],
}
CREATED = "2024-05-01T10:00:00+00:00"


def build_v0(path: Path, embedder: LexicalEmbedder, *, with_vectors: bool = True) -> None:
    """A database as the original design wrote it: every chunk with an L2 vector, one
    orphan vector, one chunk whose vector went missing."""
    with raw(path) as conn:
        ddl = V0_DDL if with_vectors else V0_TABLES_DDL
        conn.executescript(ddl)
        chunk_id = 0
        for doc_id, (source, texts) in enumerate(V0_TEXTS.items(), start=1):
            conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (doc_id, source, source.title(), f"hash-{doc_id}", '{"lang": "en"}', CREATED),
            )
            for position, text in enumerate(texts):
                chunk_id += 1
                meta = json.dumps({"_vector_source": f"{source}\n{text}", "heading_path": ["Top"]})
                conn.execute(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
                    (chunk_id, doc_id, position, text, meta),
                )
                if with_vectors and chunk_id != 4:
                    conn.execute(
                        "INSERT INTO vec_chunks (rowid, embedding) VALUES (?, ?)",
                        (chunk_id, embedder.vector(f"{source}\n{text}")),
                    )
        if with_vectors:
            conn.execute(
                "INSERT INTO vec_chunks (rowid, embedding) VALUES (99, ?)",
                (embedder.vector("orphan"),),
            )


@pytest.fixture
def embedder768() -> LexicalEmbedder:
    return LexicalEmbedder(V0_SPACE)


def _file_state(path: Path) -> dict[str, object]:
    with raw(path) as conn:
        return {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "schema": sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")),
            "documents": conn.execute("SELECT * FROM documents ORDER BY id").fetchall(),
            "chunks": conn.execute("SELECT * FROM chunks ORDER BY id").fetchall(),
            "vectors": conn.execute(
                "SELECT rowid, embedding FROM vec_chunks ORDER BY rowid"
            ).fetchall(),
        }


async def test_v0_file_is_upgraded_in_place(tmp_path: Path, embedder768: LexicalEmbedder) -> None:
    path = tmp_path / "old.db"
    build_v0(path, embedder768)
    async with await SqliteStore.open(path) as store:
        assert store.space == V0_SPACE
        assert scalar(path, "PRAGMA user_version") == CURRENT_VERSION
        assert statuses(path) == {1: "READY", 2: "READY", 3: "READY", 4: "PENDING"}
        assert vector_ids(path) == [1, 2, 3]  # orphan 99 dropped, nothing else lost
        assert await store.integrity_check() == "ok"
        ddl = scalar(path, "SELECT sql FROM sqlite_master WHERE name = 'vec_chunks'")
        assert "distance_metric=cosine" in ddl
        with raw(path) as conn:
            rows = conn.execute(
                "SELECT c.content_hash, c.meta_json, c.created_at, d.updated_at "
                "FROM chunks c JOIN documents d ON d.id = c.document_id"
            ).fetchall()
        for content_hash, meta_json, created_at, updated_at in rows:
            source = json.loads(meta_json)["_vector_source"]
            assert content_hash == hashlib.sha256(source.encode()).hexdigest()
            assert created_at == updated_at == CREATED

        query = embedder768.vector("sailors and stars at sea")
        hits = await store.search(query, k=3)
        assert hits[0].source == "sea.md"
        assert hits[0].heading_path == ("Top",)
        assert hits[0].document_metadata == {"lang": "en"}
        for hit in hits:  # cosine distances, not the old L2 ones
            stored = embedder768.vector(f"{hit.source}\n{hit.text}")
            cosine = float(np.dot(np.frombuffer(query, "<f4"), np.frombuffer(stored, "<f4")))
            assert hit.distance == pytest.approx(1 - cosine, abs=1e-5)

        # A re-ingestion of the same chunks finds them unchanged (hashes match).
        drafts = [draft(i, t, heading=("garden.md",)) for i, t in enumerate(V0_TEXTS["garden.md"])]
        write = make_write("garden.md", V0_TEXTS["garden.md"])
        outcome = await store.write_document(
            type(write)(document=write.document, content_hash="new", drafts=drafts)
        )
        assert (outcome.unchanged, outcome.stored, outcome.removed) == (2, 0, 0)
    async with await SqliteStore.open(path, space=V0_SPACE) as again:
        assert again.space == V0_SPACE


async def test_upgrade_through_the_public_function(
    tmp_path: Path, embedder768: LexicalEmbedder
) -> None:
    path = tmp_path / "old.db"
    build_v0(path, embedder768)
    conn = await open_connection(path)
    try:
        assert await ensure_schema_compatibility(conn) == 0
        assert await ensure_schema_compatibility(conn) == CURRENT_VERSION
    finally:
        await conn.close()
    assert scalar(path, "SELECT COUNT(*) FROM chunks WHERE embedding_status = 'READY'") == 3


async def test_v0_without_vectors(tmp_path: Path, embedder768: LexicalEmbedder) -> None:
    path = tmp_path / "old.db"
    build_v0(path, embedder768, with_vectors=False)
    async with await SqliteStore.open(path) as store:
        assert store.space is None
        assert await store.count_chunks_by_status() == {"READY": 0, "PENDING": 4, "FAILED": 0}
        assert await store.integrity_check() == "ok"


async def test_interrupted_upgrade_leaves_the_old_file(
    tmp_path: Path, embedder768: LexicalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    build_v0(path, embedder768)
    before = _file_state(path)
    real = schema_module._upgrade_vec_table

    async def fail_after_last_step(conn: object) -> None:
        await real(conn)  # type: ignore[arg-type]
        raise RuntimeError("power cut")

    monkeypatch.setattr(schema_module, "_upgrade_vec_table", fail_after_last_step)
    with pytest.raises(RuntimeError, match="power cut"):
        await SqliteStore.open(path)
    assert _file_state(path) == before
    assert scalar(path, "PRAGMA user_version") == 0

    monkeypatch.setattr(schema_module, "_upgrade_vec_table", real)
    async with await SqliteStore.open(path) as store:
        assert await store.count_chunks_by_status() == {"READY": 3, "PENDING": 1, "FAILED": 0}


async def test_cancelled_upgrade_leaves_the_old_file(
    tmp_path: Path, embedder768: LexicalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    build_v0(path, embedder768)
    before = _file_state(path)
    real = schema_module._fill_content_hashes

    async def cancelled(conn: object) -> None:
        await real(conn)  # type: ignore[arg-type]
        raise asyncio.CancelledError

    monkeypatch.setattr(schema_module, "_fill_content_hashes", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await SqliteStore.open(path)
    assert _file_state(path) == before


async def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with raw(path) as conn:
        conn.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY, source TEXT)")
        conn.execute("INSERT INTO documents VALUES (1, 'x')")
        conn.execute(f"PRAGMA user_version = {CURRENT_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError, match="newer"):
        await SqliteStore.open(path, space=EmbeddingSpace())
    assert path.read_bytes() == before
    conn2 = await open_connection(path)
    try:
        with pytest.raises(SchemaVersionError):
            await ensure_schema_compatibility(conn2)
    finally:
        await conn2.close()
    assert path.read_bytes() == before


async def test_foreign_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with raw(path) as conn:
        conn.execute("CREATE TABLE chunks (rowid_only INTEGER)")
    with pytest.raises(SchemaVersionError, match="lacks"):
        await SqliteStore.open(path)
    assert scalar(path, "PRAGMA user_version") == 0


async def test_upgraded_and_fresh_schemas_match(
    tmp_path: Path, embedder768: LexicalEmbedder
) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    build_v0(old, embedder768)
    for path in (old, fresh):
        async with await SqliteStore.open(path, space=V0_SPACE):
            pass

    def shape(path: Path) -> dict[str, set[tuple[object, ...]]]:
        with raw(path) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'vec_%' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            return {
                t: {tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables
            }

    assert shape(old) == shape(fresh)
    assert EmbeddingStatus.READY.value in set(statuses(old).values())


async def test_v0_file_gets_a_keyword_index(tmp_path: Path, embedder768: LexicalEmbedder) -> None:
    """The upgrade indexes every chunk, the PENDING one (no vector) too."""
    path = tmp_path / "old.db"
    build_v0(path, embedder768)
    async with await SqliteStore.open(path) as store:
        assert scalar(path, "SELECT COUNT(*) FROM chunk_keywords") == 4
        [ready] = await store.keyword_search(["waves"], k=3)
        assert ready.source == "sea.md" and ready.embedding_status is EmbeddingStatus.READY
        [pending] = await store.keyword_search(["tides"], k=3)  # chunk 4 had lost its vector
        assert pending.chunk_id == 4 and pending.embedding_status is EmbeddingStatus.PENDING


async def test_v1_file_is_upgraded_to_v2_with_its_keyword_index(
    tmp_path: Path, embedder768: LexicalEmbedder
) -> None:
    """A version-1 file (the same schema without ``chunk_keywords``) gets the index
    built in the upgrade's one transaction; a file where that fails stays at 1."""
    path = tmp_path / "v1.db"
    async with await SqliteStore.open(path, space=V0_SPACE) as store:
        await store.write_document(make_write("a.md", ["alpha ERR_1234 beta", "gamma delta"]))
        before = await store.keyword_search(query_terms("ERR_1234 gamma"), k=5)
    with raw(path) as conn:  # back to version 1, as written before the keyword index
        conn.execute("DROP TRIGGER chunks_keywords_delete")
        conn.execute("DROP TABLE chunk_keywords")
        conn.execute("PRAGMA user_version = 1")
    async with await SqliteStore.open(path) as store:
        assert scalar(path, "PRAGMA user_version") == CURRENT_VERSION == 2
        after = await store.keyword_search(query_terms("ERR_1234 gamma"), k=5)
        assert [(h.chunk_id, h.score) for h in after] == [(h.chunk_id, h.score) for h in before]
        assert len(after) == 2
        assert await store.delete_document("a.md")
        assert scalar(path, "SELECT COUNT(*) FROM chunk_keywords") == 0
