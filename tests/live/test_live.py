"""Against the real Gemini API: opt-in with ``pytest -m live``, needs ``GEMINI_API_KEY``.

``GEMINI_BATCH_API_KEY`` is used for the batch part when set (else the same key). The
batch test waits up to ``ASEMANTIC_LIVE_BATCH_WAIT`` seconds (default 1800) for Google
to run a tiny job; Google promises 24 h, so a slow day skips rather than fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from asemantic import CoreConfig, EmbeddingSpace, GoogleKeyring, JobStatus, SemanticCore

pytestmark = pytest.mark.live

KEY = os.environ.get("GEMINI_API_KEY", "")
BATCH_KEY = os.environ.get("GEMINI_BATCH_API_KEY", "") or KEY

needs_key = pytest.mark.skipif(not KEY, reason="GEMINI_API_KEY is not set")

MODELS = pytest.mark.parametrize("model", ["gemini-embedding-001", "gemini-embedding-2"])
"""Both models; for gemini-embedding-2 the batch test is also the check of the assumption
that the Developer API runs its embedding batch jobs as it does gemini-embedding-001's."""


def _config(model: str) -> CoreConfig:
    return CoreConfig(space=EmbeddingSpace(model=model, dimensions=768))


@needs_key
@MODELS
async def test_online_embedding_and_search(tmp_path: Path, model: str) -> None:
    keys = GoogleKeyring(KEY)
    async with SemanticCore.open(tmp_path / "live.db", keys=keys, config=_config(model)) as core:
        await core.ingest("# Refunds\n\nRefunds within thirty days.", source="a", mode="sync")
        await core.ingest("# Outage\n\nThe certificate expired.", source="b", mode="sync")
        hits = await core.search("how do I get my money back?", k=2)
        assert hits[0].source == "a"


@needs_key
@MODELS
async def test_batch_embedding_round_trip(tmp_path: Path, model: str) -> None:
    keys = GoogleKeyring(KEY, batch_key=BATCH_KEY)
    async with SemanticCore.open(tmp_path / "live.db", keys=keys, config=_config(model)) as core:
        for i, text in enumerate(["Refunds within thirty days.", "The certificate expired."]):
            await core.ingest(f"# Note {i}\n\n{text}", source=f"n{i}", mode="async")
        manager = core.batch_manager
        assert await manager.flush_queue(min_size=1)
        deadline = time.monotonic() + float(os.environ.get("ASEMANTIC_LIVE_BATCH_WAIT", "1800"))
        while time.monotonic() < deadline:
            await manager.sync_status()
            jobs = await core.batch_jobs.jobs()
            if all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs):
                break
            await anyio.sleep(30)
        else:
            pytest.skip("Google did not finish the batch job in time")
        counts = await core.store.count_chunks_by_status()
        assert counts["READY"] == 2
        assert (await core.search("refund", k=1))[0].source == "n0"
