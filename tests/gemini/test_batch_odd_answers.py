"""GeminiBatchClient meets the odd answers of the real service (emulated; real SDK).

Unknown states, ``done`` with an error and no state, result lines without keys, uploads
still PROCESSING or FAILED, a refused delete of the result file, and the enqueued-token
quota's 429.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.genai import errors as genai_errors

from asemantic import (
    EmbeddingSpace,
    GeminiBatchClient,
    GoogleKeyring,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    RetryConfig,
)
from asemantic.adapters.gemini.operations import NO_STATE_MESSAGE, status_from_operation
from asemantic.domain.jobs import parse_remote_state
from asemantic.ports import BatchLine, LineResult, ResultCounts
from asemantic.testing.emulator import (
    Fault,
    FileFault,
    GeminiEmulator,
    OddState,
    RealClock,
    ResultCorruption,
)

BATCH_KEY = "odd-answers-batch-key"


def _client(emulator: GeminiEmulator, tmp_path: Path, **extra: object) -> GeminiBatchClient:
    return GeminiBatchClient(
        GoogleKeyring("odd-default-key", batch_key=BATCH_KEY),
        space=EmbeddingSpace(dimensions=768),
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.01, timeout=10),
        temp_dir=tmp_path,
        **extra,  # type: ignore[arg-type]
    )


def _lines(n: int) -> list[BatchLine]:
    return [
        BatchLine(key=f"{i}-{i:012x}", text=f"line {i} about invoices", title="T") for i in range(n)
    ]


async def _read(
    client: GeminiBatchClient, output: str, expected: Sequence[str] | set[str]
) -> tuple[list[LineResult], ResultCounts]:
    counts = ResultCounts()
    results = [
        result
        async for batch in client.retrieve_results(output, expected_keys=expected, counts=counts)
        for result in batch
    ]
    return results, counts


async def _finished(
    emulator: GeminiEmulator, client: GeminiBatchClient, n: int, name: str
) -> tuple[str, list[str], list[BatchLine]]:
    sent = _lines(n)
    job = await client.create_embedding_job(sent, display_name=name)
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert status.state == "JOB_STATE_SUCCEEDED" and status.output_file
    return status.output_file, [line.key for line in sent], sent


# --- states --------------------------------------------------------------------------


async def test_an_unknown_state_passes_through_not_done(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(OddState(state="BATCH_STATE_PARTIALLY_SUCCEEDED"))
    client = _client(emulator, tmp_path)
    job = await client.create_embedding_job(_lines(2), display_name="asemantic-odd-1")
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert (status.state, status.done) == ("JOB_STATE_PARTIALLY_SUCCEEDED", False)
    assert status.raw_state == "BATCH_STATE_PARTIALLY_SUCCEEDED"
    assert parse_remote_state(status.state) is None  # the domain: unknown, keep polling
    (listed,) = await client.find_jobs_by_display_name(["asemantic-odd-1"])
    assert (listed.state, listed.done, listed.name) == (status.state, False, job.name)
    await client.cancel(job.name)  # the manager's way out: cancel, then clean up
    assert (await client.get_job_status(job.name)).state == "JOB_STATE_CANCELLED"
    await client.aclose()


async def test_done_with_an_error_and_no_state_is_failed(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(OddState(state=None, done=True, message="internal failure"))
    client = _client(emulator, tmp_path)
    job = await client.create_embedding_job(_lines(2), display_name="asemantic-odd-2")
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert (status.state, status.done, status.raw_state) == ("JOB_STATE_FAILED", True, None)
    assert (status.error_code, status.error_message) == (13, "internal failure")
    (listed,) = await client.find_jobs_by_display_name(["asemantic-odd-2"])
    assert (listed.state, listed.done) == ("JOB_STATE_FAILED", True)
    await client.aclose()


def test_operation_mapping_table() -> None:
    def status(operation: dict[str, object]) -> tuple[str, bool]:
        mapped = status_from_operation(operation, name="batches/x")
        return mapped.state, mapped.done

    meta = {"displayName": "d"}
    assert status({"metadata": {**meta, "state": "BATCH_STATE_RUNNING"}}) == (
        "JOB_STATE_RUNNING",
        False,
    )
    assert status({"metadata": {**meta, "state": "BATCH_STATE_EXPIRED"}}) == (
        "JOB_STATE_EXPIRED",
        True,
    )
    assert status({"metadata": meta}) == ("JOB_STATE_UNSPECIFIED", False)
    assert status({"metadata": {**meta, "state": "BATCH_STATE_UNSPECIFIED"}}) == (
        "JOB_STATE_UNSPECIFIED",
        False,
    )
    output = {"output": {"responsesFile": "files/r"}}
    assert status({"done": True, "metadata": {**meta, **output}}) == ("JOB_STATE_SUCCEEDED", True)
    assert status({"done": True, "response": {"responsesFile": "files/r"}}) == (
        "JOB_STATE_SUCCEEDED",
        True,
    )
    bare = status_from_operation({"done": True, "metadata": meta})
    assert (bare.state, bare.done, bare.error_message) == (
        "JOB_STATE_FAILED",
        True,
        NO_STATE_MESSAGE,
    )
    assert status({"done": True, "metadata": {"state": "BATCH_STATE_WEIRD"}}) == (
        "JOB_STATE_FAILED",
        True,
    )
    assert status({"metadata": {"state": "weird"}}) == ("JOB_STATE_WEIRD", False)


# --- keyless result lines --------------------------------------------------------------


async def test_keyless_lines_are_matched_by_order_when_the_counts_match(tmp_path: Path) -> None:
    emulator = GeminiEmulator(keyless_results=True)
    client = _client(emulator, tmp_path)
    output, keys, _ = await _finished(emulator, client, 6, "asemantic-kl-1")
    assert b'"key"' not in emulator.file_content(output)
    results, counts = await _read(client, output, keys)
    assert [r.key for r in results] == keys
    assert (counts.keyless, counts.by_position, counts.succeeded) == (6, 6, 6)
    assert counts.malformed == 0
    vectors = {r.key: r.vector for r in results}
    # The vector at each position is that line's own (texts differ, so vectors do).
    assert len(set(vectors.values())) == 6
    keyed = GeminiEmulator()  # the same texts with keys give the same vectors, key for key
    keyed_client = _client(keyed, tmp_path)
    keyed_output, _, _ = await _finished(keyed, keyed_client, 6, "asemantic-kl-1")
    expected, _ = await _read(keyed_client, keyed_output, keys)
    assert {r.key: r.vector for r in expected} == vectors
    await keyed_client.aclose()
    await client.aclose()


async def test_keyless_lines_without_an_order_are_reported_not_guessed(tmp_path: Path) -> None:
    emulator = GeminiEmulator(keyless_results=True)
    client = _client(emulator, tmp_path)
    output, keys, _ = await _finished(emulator, client, 4, "asemantic-kl-2")
    results, counts = await _read(client, output, set(keys))  # a set: no order to use
    assert results == []
    assert (counts.keyless, counts.by_position, counts.succeeded) == (4, 0, 0)
    await client.aclose()


async def test_some_keyless_lines_in_order_are_matched(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(ResultCorruption(keyless_fraction=0.5))
    client = _client(emulator, tmp_path)
    output, keys, _ = await _finished(emulator, client, 8, "asemantic-kl-3")
    results, counts = await _read(client, output, keys)
    assert sorted(r.key for r in results) == sorted(keys)
    assert (counts.keyless, counts.by_position, counts.succeeded) == (4, 4, 8)
    await client.aclose()


@pytest.mark.parametrize(
    "corruption",
    [
        ResultCorruption(keyless_fraction=0.5, reverse=True),  # keyed lines out of place
        ResultCorruption(keyless_fraction=0.5, missing_lines=1),  # one line short
        ResultCorruption(keyless_fraction=0.5, unknown_key_lines=1),  # one line too many
    ],
    ids=["reordered", "line-missing", "line-extra"],
)
async def test_keyless_lines_are_not_guessed_when_order_is_doubtful(
    tmp_path: Path, corruption: ResultCorruption
) -> None:
    emulator = GeminiEmulator()
    emulator.faults.add(corruption)
    client = _client(emulator, tmp_path)
    output, keys, _ = await _finished(emulator, client, 8, "asemantic-kl-4")
    results, counts = await _read(client, output, keys)
    assert counts.by_position == 0
    assert counts.keyless >= 3
    keyed = {r.key for r in results}
    assert len(keyed) == counts.succeeded and keyed <= set(keys)
    assert len(keyed) <= 8 - counts.keyless  # the keyless lines' chunks got nothing
    await client.aclose()


# --- uploads still processing ----------------------------------------------------------


async def test_create_waits_for_a_processing_upload(tmp_path: Path) -> None:
    emulator = GeminiEmulator(clock=RealClock(speed=100.0), file_processing_seconds=20.0)
    client = _client(emulator, tmp_path, file_poll=0.02, file_wait=30.0)
    job = await client.create_embedding_job(_lines(3), display_name="asemantic-proc-1")
    assert job.name.startswith("batches/")
    polls = emulator.requests_to("files.get")
    assert len(polls) >= 1 and all(entry.status == 200 for entry in polls)
    assert [e.status for e in emulator.requests_to("batches.create")] == [200]
    await client.aclose()


async def test_a_failed_upload_is_a_refusal_and_no_job_is_created(tmp_path: Path) -> None:
    emulator = GeminiEmulator(clock=RealClock(speed=100.0))
    emulator.faults.add(FileFault(processing_seconds=5.0, fails=True))
    client = _client(emulator, tmp_path, file_poll=0.02)
    with pytest.raises(ProviderRequestError, match="FAILED") as caught:
        await client.create_embedding_job(_lines(2), display_name="asemantic-proc-2")
    assert caught.value.status == 422
    assert emulator.requests_to("batches.create") == ()
    assert emulator.batches == ()
    await client.aclose()


async def test_an_upload_processing_too_long_is_transient_and_sends_no_create(
    tmp_path: Path,
) -> None:
    emulator = GeminiEmulator(file_processing_seconds=3600.0)  # manual clock: forever
    client = _client(emulator, tmp_path, file_poll=0.01, file_wait=0.05)
    with pytest.raises(ProviderUnavailableError, match="still PROCESSING") as caught:
        await client.create_embedding_job(_lines(2), display_name="asemantic-proc-3")
    assert caught.value.status is None
    assert emulator.requests_to("batches.create") == ()
    await client.aclose()


async def test_the_emulator_refuses_a_batch_from_a_processing_file(tmp_path: Path) -> None:
    emulator = GeminiEmulator(file_processing_seconds=60.0)
    client = _client(emulator, tmp_path, file_wait=0.0)
    with pytest.raises(ProviderUnavailableError):
        await client.create_embedding_job(_lines(1), display_name="asemantic-proc-4")
    (uploaded,) = emulator.files
    sdk = client._client().client
    with pytest.raises(genai_errors.ClientError) as caught:
        await sdk.aio.batches.create_embeddings(
            model="gemini-embedding-001",
            src={"file_name": uploaded.name},
            config={"display_name": "asemantic-proc-4"},
        )
    assert (caught.value.code, caught.value.status) == (400, "FAILED_PRECONDITION")
    emulator.advance(61.0)
    status = await sdk.aio.files.get(name=uploaded.name)
    assert status.state is not None and status.state.name == "ACTIVE"
    await client.aclose()


# --- cleanup ---------------------------------------------------------------------------


async def test_a_refused_result_file_delete_is_logged_and_the_batch_still_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = GeminiEmulator()
    client = _client(emulator, tmp_path)
    output, _, _ = await _finished(emulator, client, 2, "asemantic-clean-1")
    (job,) = emulator.batches
    emulator.faults.add(
        Fault(endpoint="files.delete", status=400, message="File deletion is not allowed.")
    )
    with caplog.at_level(logging.WARNING, logger="asemantic.adapters.gemini.batch"):
        await client.cleanup(job.name, files=[output])
    assert emulator.batches == ()  # the batch was deleted all the same
    assert [f.name for f in emulator.files if f.name == output] == [output]
    assert "refused to delete a batch file" in caplog.text
    assert BATCH_KEY not in caplog.text
    await client.aclose()


# --- the enqueued-token quota ------------------------------------------------------------


async def test_the_enqueued_token_quota_answers_429_with_retry_info(tmp_path: Path) -> None:
    emulator = GeminiEmulator(enqueued_token_limit=60, quota_retry_delay=17.0)
    client = _client(emulator, tmp_path)
    first = await client.create_embedding_job(_lines(3), display_name="asemantic-q-1")
    with pytest.raises(RateLimitError, match="enqueued tokens") as caught:
        await client.create_embedding_job(_lines(6), display_name="asemantic-q-2")
    assert caught.value.status == 429
    emulator.complete_all()  # the first job is done: its tokens leave the queue
    assert (await client.get_job_status(first.name)).done
    second = await client.create_embedding_job(_lines(6), display_name="asemantic-q-3")
    assert second.name != first.name
    await client.aclose()
