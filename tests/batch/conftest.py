"""Fixtures of the batch manager's unit suite: a job store, MemoryBatchBackend, a manager.

The job store is opened in one place, :func:`open_job_store`; swapping in another
JobStore implementation is a change there alone. Chunks are seeded the way the
ingestor writes them (:class:`~asemantic.ports.DocumentWrite` of PENDING drafts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from asemantic.adapters.factory import open_store
from asemantic.batch.manager import BatchManager
from asemantic.domain.documents import ChunkDraft, Document
from asemantic.domain.hashing import content_hash
from asemantic.domain.policy import RetryPolicy
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.tokens import approximate_tokens
from asemantic.keys import GoogleKeyring
from asemantic.ports import DocumentWrite, JobStore, Store
from asemantic.testing.backend import MemoryBatchBackend
from asemantic.testing.postgres import LocalPostgres

SPACE = EmbeddingSpace(dimensions=128)
KEYS = GoogleKeyring("unit-default-key", batch_key="unit-batch-key")


@dataclass(frozen=True, slots=True)
class Opened:
    jobs: JobStore
    store: Store

    async def seed(self, count: int, *, source: str = "doc.md", title: str = "Doc") -> None:
        """One document of ``count`` PENDING chunks, as the ingestor writes them."""
        drafts = []
        for position in range(count):
            text = f"chunk number {position} of {source} about topic{position}"
            vector_source = f"{title}\n{text}"
            drafts.append(
                ChunkDraft(
                    position=position,
                    text=text,
                    heading_path=(),
                    vector_source=vector_source,
                    content_hash=content_hash(vector_source),
                    token_estimate=approximate_tokens(vector_source),
                )
            )
        document = Document(text=" ".join(d.text for d in drafts), source=source, title=title)
        await self.store.write_document(
            DocumentWrite(document=document, content_hash=content_hash(source), drafts=drafts)
        )

    async def statuses(self, source: str = "doc.md") -> list[str]:
        snapshot = await self.store.get_document(source)
        assert snapshot is not None
        return [str(chunk.status) for chunk in snapshot.chunks]


ENGINES = {"sqlite": "kb.db", "memory": ":memory:", "postgres": "postgresql://"}
"""Every engine the suite runs on, by the target that opens it (a file in tmp_path, a
fresh PostgreSQL database of the test server, or memory)."""


async def open_job_store(engine: str, tmp_path: Path, url: str | None = None) -> Opened:
    """The one place the suite's store and JobStore are opened (``url``: PostgreSQL's)."""
    target = ENGINES[engine]
    if target == ":memory:":
        store = await open_store(target, space=SPACE)
    elif url is not None:
        store = await open_store(url, space=SPACE)
    else:
        store = await open_store(tmp_path / target, space=SPACE)
    return Opened(jobs=store.jobs, store=store)


@pytest.fixture(params=sorted(ENGINES))
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    server: LocalPostgres | None = None
    url = None
    if request.param == "postgres":  # the session's server starts only when needed
        server = request.getfixturevalue("postgres_server")
        url = await server.create_database()
    opened = await open_job_store(request.param, tmp_path, url)
    try:
        yield opened
    finally:
        await opened.store.aclose()
        if server is not None and url is not None:
            await server.drop_database(url)


@pytest.fixture
def backend() -> MemoryBatchBackend:
    return MemoryBatchBackend(SPACE)


MakeManager = Callable[..., Awaitable[BatchManager]]


@pytest.fixture
def make_manager(db: Opened, backend: MemoryBatchBackend) -> MakeManager:
    async def make(
        *, keys: GoogleKeyring | None = KEYS, max_attempts: int = 3, grace: float = 0.0
    ) -> BatchManager:
        return BatchManager(
            jobs=db.jobs,
            backend_factory=lambda: backend,
            keys=keys,
            retry=RetryPolicy(max_attempts=max_attempts),
            create_grace=grace,
        )

    return make


@pytest.fixture
async def manager(make_manager: MakeManager) -> BatchManager:
    return await make_manager()
