"""``SemanticCore.ingest_many``: the same result as one ``ingest`` after another, in
order, with the split done ahead (in a worker process when asked), on every engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import asemantic.ingestion
from asemantic import (
    Document,
    EmbeddingSpace,
    EmptyDocumentError,
    GoogleKeyring,
    InvalidInputError,
    SemanticCore,
)
from asemantic.domain.documents import IngestResult
from asemantic.testing import LexicalEmbedder
from tests.support import Databases

SPACE = EmbeddingSpace(model="lexical-hash-v1", dimensions=256)


def _documents(count: int) -> list[tuple[Document, str]]:
    items: list[tuple[Document, str]] = []
    for i in range(count):
        body = "\n\n".join(
            f"Paragraph {j} of document {i}: refunds, invoices and outages {i * j}. " * (1 + j % 7)
            for j in range(40)
        )
        text = f"# Document {i}\n\n{body}\n\n## Details\n\n" + "word " * (300 + 37 * i)
        items.append((Document(text=text, source=f"doc-{i}.md"), "markdown"))
    items.append((Document(text="Plain notes.\n\nTwo paragraphs.", source="n.txt"), "plain"))
    return items


@contextlib.asynccontextmanager
async def _core(path: Path, databases: Databases) -> AsyncIterator[SemanticCore]:
    target = await databases.target(path, space=SPACE)
    async with SemanticCore.open(
        target, embedder=LexicalEmbedder(SPACE), keys=GoogleKeyring("k", batch_key="b")
    ) as core:
        yield core


async def _chunks(core: SemanticCore) -> list[tuple[object, ...]]:
    records = await core.store.chunk_records()
    return sorted(
        (r.source, r.position, r.vector_source, r.content_hash, r.status.value) for r in records
    )


async def _all(
    core: SemanticCore, items: list[tuple[Document, str]], **kw: object
) -> list[IngestResult]:
    return [result async for result in core.ingest_many(items, **kw)]  # type: ignore[arg-type]


@pytest.fixture
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small test inputs take the worker process path too, on a busy machine too."""
    monkeypatch.setattr(asemantic.ingestion, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(asemantic.ingestion, "_spare_cpu", lambda: True)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("worker", [False, True])
async def test_same_result_as_one_ingest_after_another(
    tmp_path: Path, databases: Databases, always_parallel: None, mode: str, worker: bool
) -> None:
    items = _documents(9)
    async with _core(tmp_path / "one.db", databases) as core:
        expected = [await core.ingest(doc, mode=mode, kind=kind) for doc, kind in items]
        expected_chunks = await _chunks(core)
    async with _core(tmp_path / "many.db", databases) as core:
        results = await _all(core, items, mode=mode, worker=worker)
        assert results == expected
        assert await _chunks(core) == expected_chunks
        # Idempotent: an unchanged input writes nothing.
        again = await _all(core, items, mode=mode, worker=worker)
        assert [r.chunks_stored for r in again] == [0] * len(items)
        assert await _chunks(core) == expected_chunks


@pytest.mark.parametrize("worker", [False, True])
async def test_a_failure_is_raised_in_its_turn(
    tmp_path: Path, databases: Databases, always_parallel: None, worker: bool
) -> None:
    items = _documents(6)
    items.insert(3, (Document(text="# Only a heading\n", source="empty.md"), "markdown"))
    async with _core(tmp_path / "kb.db", databases) as core:
        done: list[IngestResult] = []

        async def consume() -> None:
            async for result in core.ingest_many(items, mode="async", worker=worker):
                done.append(result)

        with pytest.raises(EmptyDocumentError, match=r"empty\.md"):
            await consume()
        assert len(done) == 3
        stored = {source for source, *_ in await _chunks(core)}
        assert stored == {"doc-0.md", "doc-1.md", "doc-2.md"}


async def test_stopping_early_writes_nothing_more(
    tmp_path: Path, databases: Databases, always_parallel: None
) -> None:
    items = _documents(6)
    async with _core(tmp_path / "kb.db", databases) as core:
        stream = core.ingest_many(items, mode="async", worker=True)
        async with contextlib.aclosing(stream) as results:
            async for _ in results:
                break
        assert {source for source, *_ in await _chunks(core)} == {"doc-0.md"}


@pytest.mark.parametrize(
    "bad", [[("text", "markdown")], [(Document(text="x", source="s"), "pdf")], ["x"]]
)
async def test_bad_items_are_refused_before_any_write(
    tmp_path: Path, databases: Databases, bad: list[object]
) -> None:
    items: list[object] = [*_documents(2), *bad]
    async with _core(tmp_path / "kb.db", databases) as core:
        with pytest.raises(InvalidInputError):
            await _all(core, items, mode="async")  # type: ignore[arg-type]
        assert await _chunks(core) == []


async def test_without_a_worker_process_all_of_it_is_done_here(
    tmp_path: Path, databases: Databases, always_parallel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", refused)
    items = _documents(4)
    async with _core(tmp_path / "one.db", databases) as core:
        expected = [await core.ingest(doc, mode="async", kind=kind) for doc, kind in items]
    async with _core(tmp_path / "many.db", databases) as core:
        assert await _all(core, items, mode="async", worker=True) == expected


_PARENT = """
import asyncio, multiprocessing, sys, time
from pathlib import Path
import asemantic.ingestion
from asemantic import Document, EmbeddingSpace, GoogleKeyring, SemanticCore
from asemantic.testing import LexicalEmbedder

asemantic.ingestion.PARALLEL_MIN_CHARS = 0
asemantic.ingestion._spare_cpu = lambda: True
SPACE = EmbeddingSpace(model="lexical-hash-v1", dimensions=256)


async def main() -> None:
    body = "many words here. " * 40_000
    items = [
        (Document(text=f"# Doc {i}\\n\\n{body}", source=f"{i}.md"), "markdown")
        for i in range(40)
    ]
    async with SemanticCore.open(
        Path(sys.argv[1]), embedder=LexicalEmbedder(SPACE), keys=GoogleKeyring("k", batch_key="b")
    ) as core:
        async for _ in core.ingest_many(items, mode="async", worker=True):
            for child in multiprocessing.active_children():
                print(child.pid, flush=True)
            time.sleep(60)  # killed meanwhile


if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_worker_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A pool's worker would wait for work forever after a ``kill -9`` of its parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_PARENT, encoding="utf-8")
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "kb.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = [int(parent.stdout.readline())]
        assert Path(f"/proc/{pids[0]}").exists()
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pids[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    stat = Path(f"/proc/{pids[0]}/stat")
    gone = not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z")
    assert gone, "the worker outlived its parent"
