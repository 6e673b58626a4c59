"""A knowledge base on gemini-embedding-2, end to end on every engine: ingestion online
and through batch jobs driven by a supervisor, search, and the cost report at the
model's prices ($0.20 online, $0.10 batch per million tokens). The real google-genai SDK
talks to the emulator, which models the model (task fields ignored, one vector per
content)."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from asemantic import BatchSupervisor, CoreConfig, JobStatus, SemanticCore
from asemantic.domain.models import task_text
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import ChunkTooLargeError
from asemantic.testing.emulator import GeminiEmulator
from tests.pipeline.conftest import OpenCore
from tests.support import fast_supervisor, vector_counts

SPACE = EmbeddingSpace(model="gemini-embedding-2", dimensions=768)
CONFIG = CoreConfig(space=SPACE, create_grace_seconds=0.0)

DOCUMENTS = {
    "refunds.md": "# Refunds\n\nA refund reaches the card within five business days.\n",
    "vacation.md": "# Vacation\n\nVacation days need approval from your manager first.\n",
    "outage.md": "# Outage\n\nThe payment outage was caused by an expired certificate.\n",
    "onboarding.md": "# Onboarding\n\nNew hires get a laptop and accounts on day one.\n",
}


async def _keep_completing(emulator: GeminiEmulator) -> None:
    while True:
        emulator.complete_all()
        await anyio.sleep(0.005)


async def _expect_hits(core: SemanticCore) -> None:
    for query, source in [
        ("how many days until my refund arrives", "refunds.md"),
        ("who approves vacation days", "vacation.md"),
        ("what caused the payment outage", "outage.md"),
    ]:
        hits = await core.search(query, k=2)
        assert hits[0].source == source, (query, [hit.source for hit in hits])


async def test_sync_ingest_search_and_online_prices(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core(config=CONFIG)
    assert core.space == SPACE
    for source, text in DOCUMENTS.items():
        result = await core.ingest(text, source=source, mode="sync")
        assert result.chunks_stored == 1 and result.tokens_embedded > 0
    # Ingesting the same text again sends nothing: the prefix is not part of the hash.
    again = await core.ingest(DOCUMENTS["refunds.md"], source="refunds.md", mode="sync")
    assert again.chunks_stored == 0 and again.tokens_embedded == 0
    await _expect_hits(core)
    # The stored vector is the emulator's for the prefixed vector source.
    chunk = next(c for c in await core.store.chunk_records() if c.source == "refunds.md")
    assert "| text:" not in chunk.vector_source and "Title: Refunds" in chunk.vector_source
    stats = await core.stats()
    cost = stats.cost
    assert (cost.pricing.online_per_million, cost.pricing.batch_per_million) == (0.20, 0.10)
    assert cost.tokens_online > 0 and cost.tokens_query > 0
    assert cost.cost_online_usd == pytest.approx(cost.tokens_online * 0.20 / 1_000_000)
    assert cost.cost_query_usd == pytest.approx(cost.tokens_query * 0.20 / 1_000_000)


async def test_async_ingest_through_a_supervisor_then_search_and_batch_prices(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core(config=CONFIG)
    for source, text in DOCUMENTS.items():
        await core.ingest(text, source=source, mode="async")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(_keep_completing, emulator)
            async with BatchSupervisor(core, fast_supervisor()) as supervisor:
                await supervisor.wait_until_idle()
            helpers.cancel_scope.cancel()
    counts = await core.store.count_chunks_by_status()
    assert counts == {"READY": len(DOCUMENTS), "PENDING": 0, "FAILED": 0}
    assert await vector_counts(core) == (len(DOCUMENTS), len(DOCUMENTS))
    assert {job.status for job in await core.batch_jobs.jobs()} == {JobStatus.COMPLETED}
    assert not emulator.remote_leftovers()
    await _expect_hits(core)
    cost = (await core.stats()).cost
    assert cost.tokens_batch > 0
    assert cost.cost_batch_usd == pytest.approx(cost.tokens_batch * 0.10 / 1_000_000)
    assert cost.savings_percent == pytest.approx(50.0)


async def test_sync_and_batch_vectors_of_one_chunk_are_the_same(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    """Both routes send the same request for a chunk (prefix, no task fields), so the
    vectors agree: the emulator's for ``title: ... | text: <vector source>``."""
    text = DOCUMENTS["refunds.md"]
    core = await open_core(config=CONFIG)
    await core.ingest(text, source="online.md", title="Refunds", mode="sync")
    await core.ingest(text, source="batch.md", title="Refunds", mode="async")
    await core.batch_manager.flush_queue(min_size=1)
    emulator.complete_all()
    await core.batch_manager.sync_status()
    rows = dict(await core.store.vector_rows())
    records = {c.chunk_id: c for c in await core.store.chunk_records()}
    assert len(rows) == 2
    blobs = [np.frombuffer(blob, dtype="<f4") for blob in rows.values()]
    assert blobs[0] == pytest.approx(blobs[1], abs=1e-6)
    source = records[next(iter(rows))].vector_source
    expected = np.asarray(
        emulator.embed(
            task_text("RETRIEVAL_DOCUMENT", source, title="Refunds"),
            dimensions=768,
            model="gemini-embedding-2",
        )
    )
    assert blobs[0] == pytest.approx(expected / np.linalg.norm(expected), abs=1e-6)


async def test_long_chunks_fit_gemini_embedding_2_and_the_limit_counts_the_prefix(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    long_text = "# Long\n\n" + " ".join(f"refund{i % 50}" for i in range(2000)) + "\n"
    config = CoreConfig(space=SPACE, target_tokens=6000, max_tokens=7000, create_grace_seconds=0.0)
    core = await open_core(config=config)
    result = await core.ingest(long_text, source="long.md", mode="sync")
    assert result.chunks_stored == 1  # about 6,000 tokens: over 2,048, under 8,192
    (hit,) = await core.search("refund7", k=1)
    assert hit.source == "long.md"
    # A query that fits the limit alone but not with its task prefix is refused before
    # any request is sent.
    query = " ".join(["refund"] * (8192 * 3 // 6))  # 4,096 words of 2 tokens: 8,192
    before = len(emulator.requests)
    with pytest.raises(ChunkTooLargeError, match="8,192"):
        await core.search(query, k=1)
    assert len(emulator.requests) == before


async def test_the_same_long_chunk_is_refused_for_gemini_embedding_001(
    open_core: OpenCore, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    long_text = "# Long\n\n" + " ".join(f"refund{i % 50}" for i in range(2000)) + "\n"
    config = CoreConfig(
        space=EmbeddingSpace(dimensions=768),
        target_tokens=6000,
        max_tokens=7000,
        create_grace_seconds=0.0,
    )
    core = await open_core(tmp_path / "one.db", config=config)
    with pytest.raises(ChunkTooLargeError, match="2,048"):
        await core.ingest(long_text, source="long.md", mode="sync")
    assert await core.store.chunk_records() == []
    assert not emulator.requests
