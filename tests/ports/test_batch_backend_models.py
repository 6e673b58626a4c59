"""The BatchBackend contract per embedding model: the in-memory backend and the real
Gemini client (through the SDK to the emulator) give the same vectors for the same
lines, and refuse the same over-long lines, for gemini-embedding-001 and
gemini-embedding-2 (its task prefix in the text, its 8,192-token limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.keys import GoogleKeyring
from asemantic.ports import BatchBackend, BatchLine, LineResult, ResultCounts
from asemantic.testing.backend import MemoryBatchBackend
from asemantic.testing.emulator import GeminiEmulator

MODELS = ("gemini-embedding-001", "gemini-embedding-2")

LINES = [
    BatchLine(key="1-000000000001", text="refunds reach the card in five days", title="Billing"),
    BatchLine(key="2-000000000002", text="vacation days carry over until March"),
    BatchLine(key="3-000000000003", text="word " * 3000, title="Long"),  # over 2,048 tokens
    BatchLine(key="4-000000000004", text="word " * 9000),  # over 8,192 tokens
]


class Completes(Protocol):
    def complete_all(self) -> object: ...


async def _results(backend: BatchBackend, provider: Completes) -> dict[str, LineResult]:
    job = await backend.create_embedding_job(LINES, display_name="asemantic-models-1")
    provider.complete_all()
    status = await backend.get_job_status(job.name)
    assert status.output_file is not None
    found: dict[str, LineResult] = {}
    async for batch in backend.retrieve_results(
        status.output_file, expected_keys={line.key for line in LINES}, counts=ResultCounts()
    ):
        found |= {result.key: result for result in batch}
    await backend.aclose()
    return found


@pytest.mark.parametrize("model", MODELS)
async def test_memory_and_gemini_backends_agree_per_model(model: str, tmp_path: Path) -> None:
    space = EmbeddingSpace(model=model, dimensions=768)
    memory = MemoryBatchBackend(space)
    from_memory = await _results(memory, memory)
    emulator = GeminiEmulator()
    client = GeminiBatchClient(
        GoogleKeyring("models-default-key", batch_key="models-batch-key"),
        space=space,
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.01, timeout=10.0),
        temp_dir=tmp_path,
    )
    from_gemini = await _results(client, emulator)
    refused = {"gemini-embedding-001": {"3-000000000003", "4-000000000004"}}.get(
        model, {"4-000000000004"}
    )
    for name, results in (("memory", from_memory), ("gemini", from_gemini)):
        assert {key for key, r in results.items() if r.vector is None} == refused, name
        for key in refused:
            assert results[key].error_code == 400
            assert "exceeds the maximum number of tokens" in (results[key].error_message or "")
    for key, result in from_memory.items():
        if key in refused:
            continue
        assert result.vector is not None and from_gemini[key].vector is not None
        mine = np.frombuffer(result.vector, dtype="<f4")
        theirs = np.frombuffer(from_gemini[key].vector or b"", dtype="<f4")
        # The same direction (the stores normalise on write; gemini-embedding-001's
        # reduced vectors come back off unit length).
        assert mine == pytest.approx(theirs / np.linalg.norm(theirs), abs=1e-6), key
        assert result.vector == memory.vector(LINES[int(key[0]) - 1])
