"""GeminiBatchClient against the emulator, through the real google-genai SDK."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from asemantic import (
    EmbeddingSpace,
    GeminiBatchClient,
    GoogleKeyring,
    ProviderRequestError,
    RetryConfig,
)
from asemantic.ports import BatchLine, ResultCounts
from asemantic.testing.emulator import Fault, GeminiEmulator, LineFault, ResultCorruption

BATCH_KEY = "batch-client-secret-42"


def _client(emulator: GeminiEmulator, tmp_path: Path, dims: int = 768) -> GeminiBatchClient:
    return GeminiBatchClient(
        GoogleKeyring("default-key-x", batch_key=BATCH_KEY),
        space=EmbeddingSpace(dimensions=dims),
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RetryConfig(attempts=3, initial_delay=0.0, max_delay=0.01, timeout=10),
        temp_dir=tmp_path,
    )


def _files(path: Path) -> list[str]:
    return os.listdir(path)


def _lines(n: int) -> list[BatchLine]:
    return [
        BatchLine(key=f"{i}-{i:012x}", text=f"text number {i} about refunds", title="T")
        for i in range(n)
    ]


def test_needs_a_batch_key() -> None:
    with pytest.raises(ValueError, match="Batch operations require a dedicated API key"):
        GeminiBatchClient(GoogleKeyring("only-default"))


async def test_create_poll_retrieve_cleanup(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = _client(emulator, tmp_path)
    job = await client.create_embedding_job(_lines(5), display_name="asemantic-test-1")
    assert job.name.startswith("batches/")
    assert job.input_file and job.input_file.startswith("files/")
    assert _files(tmp_path) == []  # the JSONL temp file is gone
    uploaded = emulator.file_content(job.input_file).decode()
    assert '"content":{"parts":[{"text":"text number 0 about refunds"}]}' in uploaded
    assert BATCH_KEY not in uploaded
    status = await client.get_job_status(job.name)
    assert status.state == "JOB_STATE_PENDING"
    assert not status.done
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert status.state == "JOB_STATE_SUCCEEDED"
    assert status.done
    assert status.output_file
    counts = ResultCounts()
    keys = {line.key for line in _lines(5)}
    results = [
        r
        async for batch in client.retrieve_results(
            status.output_file, expected_keys=keys, counts=counts
        )
        for r in batch
    ]
    assert {r.key for r in results} == keys
    for result in results:
        assert result.vector is not None
        assert np.frombuffer(result.vector, dtype="<f4").shape == (768,)
        assert result.token_count and result.token_count > 0
    assert counts.succeeded == 5
    assert _files(tmp_path) == []  # the downloaded result file is gone
    await client.cleanup(job.name, files=[job.input_file, status.output_file])
    assert not emulator.remote_leftovers()
    # cleaning up again: not found counts as done
    await client.cleanup(job.name, files=[job.input_file])
    await client.aclose()


async def test_results_join_by_key_and_count_bad_lines(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = _client(emulator, tmp_path)
    emulator.faults.add(LineFault(code=400, keys=("1-000000000001",), message="too long"))
    emulator.faults.add(ResultCorruption(garbage_lines=2, blank_lines=1, unknown_key_lines=2))
    job = await client.create_embedding_job(_lines(4), display_name="asemantic-test-2")
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert status.output_file
    counts = ResultCounts()
    results = {
        r.key: r
        async for batch in client.retrieve_results(
            status.output_file, expected_keys={line.key for line in _lines(4)}, counts=counts
        )
        for r in batch
    }
    assert len(results) == 4
    bad = results["1-000000000001"]
    assert bad.vector is None
    assert bad.error_code == 400
    assert bad.error_message == "too long"
    assert counts.malformed == 2
    assert counts.blank == 1
    assert counts.unknown_keys == 2
    await client.aclose()


async def test_create_is_not_retried(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = _client(emulator, tmp_path)
    emulator.faults.add(Fault(endpoint="batches.create", status=503))
    with pytest.raises(Exception, match="503"):
        await client.create_embedding_job(_lines(2), display_name="asemantic-test-3")
    assert len(emulator.requests_to("batches.create")) == 1
    await client.aclose()


async def test_wrong_model_is_refused_with_a_typed_error(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = GeminiBatchClient(
        GoogleKeyring("d", batch_key=BATCH_KEY),
        space=EmbeddingSpace(model="no-such-model", dimensions=768),
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        temp_dir=tmp_path,
    )
    with pytest.raises(ProviderRequestError):
        await client.create_embedding_job(_lines(1), display_name="asemantic-test-4")
    await client.aclose()


async def test_find_jobs_and_files_page_through_everything(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = _client(emulator, tmp_path)
    names = [f"asemantic-page-{i}" for i in range(105)]
    for name in names:
        await client.create_embedding_job(_lines(1), display_name=name)
    found = await client.find_jobs_by_display_name({names[0], names[104], "absent"})
    assert {j.display_name for j in found} == {names[0], names[104]}
    files = await client.find_files_by_prefix("asemantic-page-")
    assert len(files) == 105
    assert len(emulator.requests_to("batches.list")) >= 2  # more than one page
    await client.aclose()


def test_temp_files_are_private(tmp_path: Path) -> None:
    fd, path = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


async def test_a_cancelled_upload_leaves_no_temp_file(tmp_path: Path) -> None:
    """Cancelled while the upload waits on a slow provider, and again during clean-up's
    window: the private JSONL is removed all the same (supervisor shutdowns cancel)."""
    emulator = GeminiEmulator(request_latency=5.0)
    client = _client(emulator, tmp_path)
    task = asyncio.ensure_future(client.upload_input(_lines(50), display_name="asemantic-t"))
    for _ in range(200):  # until the file exists: the upload is under way
        await asyncio.sleep(0.01)
        if _files(tmp_path):
            break
    assert _files(tmp_path), "the upload never wrote its temp file"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _files(tmp_path) == []
    await client.aclose()


async def test_a_cancellation_during_the_write_leaves_no_temp_file(tmp_path: Path) -> None:
    client = _client(GeminiEmulator(), tmp_path)
    task = asyncio.ensure_future(client.upload_input(_lines(20_000), display_name="asemantic-t"))
    await asyncio.sleep(0)  # the worker thread has started writing (or is about to)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)  # the thread finishes writing to the unlinked file
    assert _files(tmp_path) == []
    await client.aclose()
