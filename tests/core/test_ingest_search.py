"""SemanticCore with the lexical test embedder: ingestion, re-ingestion, search, bad input,
on every engine (the ``databases`` of the test's ``engine``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asemantic import (
    ChunkTooLargeError,
    CoreConfig,
    Document,
    EmbeddingSpace,
    EmbeddingSpaceMismatchError,
    EmbeddingStatus,
    EmptyDocumentError,
    GoogleKeyring,
    IngestMode,
    InputFileError,
    InvalidInputError,
    InvalidModeError,
    SemanticCore,
    StoreClosedError,
    UndecodableTextError,
)
from asemantic.testing import LexicalEmbedder
from tests.support import Databases

DOCS = {
    "refunds": "# Refunds\n\nCustomers get a full refund within thirty days of purchase.",
    "outage": "# Outage\n\nThe payment gateway certificate expired and checkout failed.",
    "vacation": "# Vacation\n\nEmployees have twenty-eight days of paid vacation a year.",
}


@pytest.fixture
def embedder() -> LexicalEmbedder:
    return LexicalEmbedder(EmbeddingSpace(model="lexical-hash-v1", dimensions=256))


@pytest.fixture
async def core(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> AsyncIterator[SemanticCore]:
    target = await databases.target(tmp_path / "kb.db", space=embedder.space)
    async with SemanticCore.open(
        target, embedder=embedder, keys=GoogleKeyring("k", batch_key="b")
    ) as opened:
        yield opened


async def _rows(core: SemanticCore, kind: str) -> int:
    """Documents, chunks or vectors stored (read through the ports)."""
    if kind == "documents":
        return (await core.store.stats()).documents
    if kind == "chunks":
        return len(await core.store.chunk_records())
    assert kind == "vectors"
    return len(await core.store.vector_rows())


async def test_sync_ingest_then_search_ranks_shared_words_first(
    core: SemanticCore, embedder: LexicalEmbedder
) -> None:
    for source, text in DOCS.items():
        result = await core.ingest(text, source=source)
        assert result.mode is IngestMode.SYNC
        assert result.chunks_stored == 1
        assert result.tokens_embedded > 0
    hits = await core.search("refund purchase", k=3, mode="vector")
    assert next(h.source for h in hits) == "refunds"
    assert hits[0].title == "Refunds"
    distances = [h.distance for h in hits]
    assert None not in distances
    assert distances == sorted(d for d in distances if d is not None)
    assert hits[0].heading_path == ("Refunds",)
    (vector_source,) = [
        c.vector_source
        for c in await core.store.chunk_records()
        if c.position == 0 and c.document_id == hits[0].document_id
    ]
    assert "Refunds" in vector_source
    assert "full refund" in vector_source


async def test_unchanged_document_costs_nothing(
    core: SemanticCore, embedder: LexicalEmbedder
) -> None:
    await core.ingest(DOCS["refunds"], source="refunds")
    before = embedder.texts_embedded
    again = await core.ingest(DOCS["refunds"], source="refunds")
    assert embedder.texts_embedded == before
    assert again.chunks_stored == 0
    assert again.chunks_unchanged == 1


async def test_changed_document_keeps_unchanged_chunks(
    core: SemanticCore, embedder: LexicalEmbedder
) -> None:
    long_doc = "\n\n".join(f"## Part {i}\n\n" + f"paragraph {i} " * 200 for i in range(4))
    first = await core.ingest(long_doc, source="long", title="Long")
    assert first.chunks_stored >= 4
    edited = long_doc.replace("paragraph 2 ", "changed 2 ")
    before = embedder.texts_embedded
    second = await core.ingest(edited, source="long", title="Long")
    assert second.chunks_unchanged == first.chunks_stored - second.chunks_stored
    assert 1 <= second.chunks_stored < first.chunks_stored
    assert embedder.texts_embedded - before == second.chunks_stored
    assert second.chunks_removed == second.chunks_stored
    assert await _rows(core, "chunks") == first.chunks_stored
    assert await _rows(core, "vectors") == first.chunks_stored
    assert await core.store.integrity_check() == "ok"


async def test_async_mode_stores_pending_and_returns_at_once(
    core: SemanticCore, embedder: LexicalEmbedder
) -> None:
    result = await core.ingest(DOCS["outage"], source="outage", mode="async")
    assert result.mode is IngestMode.ASYNC
    assert result.chunks_pending == 1
    assert embedder.texts_embedded == 0
    assert await _rows(core, "vectors") == 0
    assert await core.search("certificate", mode="vector") == []
    # Findable at once by its words (the default, hybrid, includes the keyword list).
    [hit] = await core.search("certificate")
    assert hit.embedding_status is EmbeddingStatus.PENDING
    assert (hit.distance, hit.vector_rank, hit.keyword_rank) == (None, None, 1)


async def test_auto_mode_reports_its_choice(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> None:
    config = CoreConfig(space=embedder.space, auto_batch_min_tokens=50)
    keys = GoogleKeyring("k", batch_key="b")
    first = await databases.target(tmp_path / "a.db", space=embedder.space)
    async with SemanticCore.open(first, embedder=embedder, keys=keys, config=config) as core:
        small = await core.ingest("# Small\n\nshort note", source="small", mode="auto")
        big = await core.ingest("# Big\n\n" + "many words here " * 100, source="big", mode="auto")
    assert small.mode is IngestMode.SYNC
    assert big.mode is IngestMode.ASYNC
    assert small.mode_reason
    assert big.mode_reason
    second = await databases.target(tmp_path / "b.db", space=embedder.space)
    async with SemanticCore.open(
        second, embedder=embedder, keys=GoogleKeyring("k"), config=config
    ) as core:
        big = await core.ingest("# Big\n\n" + "many words here " * 100, source="big", mode="auto")
    assert big.mode is IngestMode.SYNC
    assert "batch key" in big.mode_reason


async def test_ingest_file_markdown_and_text(core: SemanticCore, tmp_path: Path) -> None:
    md = tmp_path / "notes.md"
    md.write_text("# Release notes\n\nWe shipped search.\n", encoding="utf-8")
    txt = tmp_path / "policy.txt"
    txt.write_bytes(b"Leave policy\r\n\r\nTwenty days.\r\n")
    first = await core.ingest_file(md)
    await core.ingest_file(txt)
    hits = await core.search("release search", k=1)
    assert hits[0].source == str(md.resolve())
    assert hits[0].title == "Release notes"
    assert first.document_id == hits[0].document_id
    hits = await core.search("leave policy", k=1)
    assert hits[0].title == "policy"
    assert "\r" not in hits[0].text


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("missing.md", None, InputFileError),
        ("image.png", b"\x89PNG", InputFileError),
        ("empty.md", b"   \n\t\n", EmptyDocumentError),
        ("latin1.txt", "caf\xe9".encode("latin-1"), UndecodableTextError),
        ("nul.md", b"abc\x00def", UndecodableTextError),
    ],
)
async def test_bad_files_are_refused_and_write_nothing(
    core: SemanticCore, tmp_path: Path, name: str, content: bytes | None, error: type[Exception]
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error):
        await core.ingest_file(path)
    assert await _rows(core, "documents") == 0
    assert await _rows(core, "chunks") == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"document": "", "source": "x"}, EmptyDocumentError),
        ({"document": "  \n ", "source": "x"}, EmptyDocumentError),
        ({"document": "lone \ud800 surrogate", "source": "x"}, UndecodableTextError),
        ({"document": "nul \x00 byte", "source": "x"}, UndecodableTextError),
        ({"document": "text", "source": "x", "mode": "later"}, InvalidModeError),
        ({"document": "text"}, InvalidInputError),
        ({"document": "text", "source": "x", "metadata": {"n": float("nan")}}, InvalidInputError),
        ({"document": 42, "source": "x"}, InvalidInputError),
        ({"document": "text", "source": "x", "kind": "markdwon"}, InvalidInputError),
        ({"document": "# " + "title " * 3000 + "\n\nbody", "source": "x"}, ChunkTooLargeError),
    ],
)
async def test_bad_input_is_typed_and_writes_nothing(
    core: SemanticCore, embedder: LexicalEmbedder, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await core.ingest(**kwargs)  # type: ignore[arg-type]
    assert await _rows(core, "documents") == 0
    assert embedder.texts_embedded == 0


@pytest.mark.parametrize("query", ["", "   ", "bad \ud800"])
async def test_bad_queries(core: SemanticCore, query: str) -> None:
    with pytest.raises(InvalidInputError):
        await core.search(query)


@pytest.mark.parametrize("k", [0, -1, 1001, True, 2.5])
async def test_bad_k(core: SemanticCore, k: object) -> None:
    with pytest.raises(InvalidInputError):
        await core.search("x", k=k)  # type: ignore[arg-type]


async def test_filters_by_document_and_metadata(core: SemanticCore) -> None:
    for source, text in DOCS.items():
        await core.ingest(
            Document(
                text=text,
                source=source,
                metadata={"team": "hr" if source == "vacation" else "finance"},
            )
        )
    hits = await core.search("refund", k=5, filters={"team": "hr"})
    assert [h.source for h in hits] == ["vacation"]
    hits = await core.search("refund", k=5, filters={"source": ["outage", "vacation"]})
    assert {h.source for h in hits} == {"outage", "vacation"}
    doc_id = hits[0].document_id
    hits = await core.search("anything", k=5, filters={"document_id": doc_id})
    assert {h.document_id for h in hits} == {doc_id}
    with pytest.raises(InvalidInputError):
        await core.search("x", filters={"document_id": "one"})


async def test_delete_document_removes_vectors(core: SemanticCore) -> None:
    await core.ingest(DOCS["refunds"], source="refunds")
    assert await core.delete_document("refunds")
    assert not await core.delete_document("refunds")
    assert await _rows(core, "vectors") == 0
    assert await core.search("refund") == []


async def test_aclose_is_idempotent_and_closed_core_refuses(
    tmp_path: Path, embedder: LexicalEmbedder, databases: Databases
) -> None:
    target = await databases.target(tmp_path / "c.db", space=embedder.space)
    core = await SemanticCore.open(target, embedder=embedder)
    await core.aclose()
    await core.aclose()
    with pytest.raises(StoreClosedError):
        await core.search("x")
    with pytest.raises(StoreClosedError):
        await core.ingest("x", source="y")
    assert not embedder.closed  # the caller's embedder stays the caller's


async def test_a_different_embedding_space_is_refused(tmp_path: Path, databases: Databases) -> None:
    if not databases.durable:
        pytest.skip("a memory database is gone with its store: nothing to reopen")
    target = await databases.url(tmp_path / "space.db")
    async with SemanticCore.open(target, embedder=LexicalEmbedder(EmbeddingSpace(dimensions=256))):
        pass
    other = LexicalEmbedder(EmbeddingSpace(dimensions=512))
    with pytest.raises(EmbeddingSpaceMismatchError, match="512"):
        await SemanticCore.open(target, embedder=other)


async def test_open_needs_keys_or_embedder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        await SemanticCore.open(tmp_path / "x.db")


def test_reprs_hide_keys() -> None:
    keys = GoogleKeyring("secret-default-1", batch_key="secret-batch-2")
    assert "secret" not in repr(keys)
    assert "secret" not in str(keys)
