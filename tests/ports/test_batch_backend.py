"""The BatchBackend contract: the same tests over every implementation.

``memory`` is :class:`~asemantic.testing.MemoryBatchBackend`; ``gemini-emulator`` is the
real :class:`~asemantic.adapters.gemini.batch.GeminiBatchClient` going through the real
google-genai SDK to the in-process emulator. Jobs are moved along by each backend's
driver (:mod:`tests.ports.backends`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path

import numpy as np
import pytest

from asemantic.errors import ProviderRequestError, StoreClosedError
from asemantic.ports import BatchBackend, BatchLine, LineResult, RemoteJob, ResultCounts
from tests.ports.backends import BACKENDS, SPACE, BackendDriver, open_backend


@pytest.fixture(params=BACKENDS)
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BackendDriver]:
    opened = open_backend(request.param, tmp_path)
    yield opened
    await opened.backend.aclose()


@pytest.fixture
def backend(driver: BackendDriver) -> BatchBackend:
    return driver.backend


def lines(n: int, *, start: int = 0) -> list[BatchLine]:
    return [
        BatchLine(key=f"{i}-{i:012x}", text=f"note {i} about refunds and invoices", title="Notes")
        for i in range(start, start + n)
    ]


def keys_of(batch: Collection[BatchLine]) -> set[str]:
    return {line.key for line in batch}


async def finished_output(backend: BatchBackend, driver: BackendDriver, job: RemoteJob) -> str:
    driver.complete_all()
    status = await backend.get_job_status(job.name)
    assert status.state == "JOB_STATE_SUCCEEDED"
    assert status.output_file is not None
    return status.output_file


async def read_all(
    backend: BatchBackend, output_file: str, expected: Collection[str], counts: ResultCounts
) -> list[LineResult]:
    return [
        result
        async for batch in backend.retrieve_results(
            output_file, expected_keys=expected, counts=counts
        )
        for result in batch
    ]


async def test_create_returns_the_remote_job_with_its_input_file(backend: BatchBackend) -> None:
    job = await backend.create_embedding_job(lines(3), display_name="asemantic-c-1")
    assert job.name.startswith("batches/")
    assert job.display_name == "asemantic-c-1"
    assert job.input_file is not None and job.input_file.startswith("files/")
    status = await backend.get_job_status(job.name)
    assert (status.name, status.display_name) == (job.name, "asemantic-c-1")


async def test_create_refuses_an_empty_job(backend: BatchBackend) -> None:
    with pytest.raises(ValueError, match="at least one line"):
        await backend.create_embedding_job([], display_name="asemantic-c-empty")
    assert await backend.find_jobs_by_display_name(["asemantic-c-empty"]) == []


async def test_status_moves_pending_running_succeeded(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    job = await backend.create_embedding_job(lines(2), display_name="asemantic-s-1")
    seen = [await backend.get_job_status(job.name)]
    driver.start_all()
    seen.append(await backend.get_job_status(job.name))
    driver.complete_all()
    seen.append(await backend.get_job_status(job.name))
    assert [s.state for s in seen] == [
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
    ]
    assert [s.done for s in seen] == [False, False, True]
    assert seen[0].output_file is None and seen[1].output_file is None
    assert seen[2].output_file is not None and seen[2].output_file.startswith("files/")
    assert seen[2].output_file != job.input_file


async def test_results_carry_one_vector_per_key(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    sent = lines(5)
    job = await backend.create_embedding_job(sent, display_name="asemantic-r-1")
    output = await finished_output(backend, driver, job)
    counts = ResultCounts()
    results = await read_all(backend, output, keys_of(sent), counts)
    assert sorted(r.key for r in results) == sorted(keys_of(sent))
    for result in results:
        assert result.error_code is None and result.vector is not None
        values = np.frombuffer(result.vector, dtype="<f4")
        assert values.shape == (SPACE.dimensions,)
        assert np.isfinite(values).all() and float(np.linalg.norm(values)) > 0.1
        assert result.token_count is not None and result.token_count > 0
    assert (counts.lines, counts.succeeded, counts.failed) == (5, 5, 0)
    assert (counts.unknown_keys, counts.duplicates, counts.malformed) == (0, 0, 0)


async def test_results_are_deterministic_and_differ_by_text(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    same = [
        BatchLine(key="1-000000000001", text="refund policy for invoices"),
        BatchLine(key="2-000000000002", text="refund policy for invoices"),
        BatchLine(key="3-000000000003", text="vacation days and holidays"),
    ]
    job = await backend.create_embedding_job(same, display_name="asemantic-r-2")
    output = await finished_output(backend, driver, job)
    results = {
        r.key: r.vector for r in await read_all(backend, output, keys_of(same), ResultCounts())
    }
    assert results["1-000000000001"] == results["2-000000000002"]
    assert results["1-000000000001"] != results["3-000000000003"]


async def test_results_count_unknown_keys_and_duplicates(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    sent = [*lines(4), lines(1)[0]]  # the first key is sent twice
    job = await backend.create_embedding_job(sent, display_name="asemantic-r-3")
    output = await finished_output(backend, driver, job)
    expected = keys_of(lines(3))  # the fourth key is nobody's
    counts = ResultCounts()
    results = await read_all(backend, output, expected, counts)
    assert sorted(r.key for r in results) == sorted(expected)
    assert counts.lines == 5
    assert (counts.succeeded, counts.failed) == (3, 0)
    assert (counts.unknown_keys, counts.duplicates) == (1, 1)


async def test_per_line_errors_come_back_as_errors(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    sent = lines(4)
    permanent, retryable = sent[1].key, sent[2].key
    driver.fail_lines([permanent], code=400, message="the text is too long")
    driver.fail_lines([retryable], code=503, message="try again later")
    job = await backend.create_embedding_job(sent, display_name="asemantic-e-1")
    output = await finished_output(backend, driver, job)
    counts = ResultCounts()
    results = {r.key: r for r in await read_all(backend, output, keys_of(sent), counts)}
    assert len(results) == 4
    bad = results[permanent]
    assert (bad.vector, bad.error_code, bad.error_status) == (None, 400, "INVALID_ARGUMENT")
    assert bad.error_message == "the text is too long"
    again = results[retryable]
    assert (again.vector, again.error_code, again.error_status) == (None, 503, "UNAVAILABLE")
    assert results[sent[0].key].vector is not None
    assert (counts.succeeded, counts.failed) == (2, 2)


async def test_find_jobs_by_display_name_finds_those_and_nothing_else(
    backend: BatchBackend,
) -> None:
    first = await backend.create_embedding_job(lines(1), display_name="asemantic-f-1")
    second = await backend.create_embedding_job(lines(1), display_name="asemantic-f-2")
    await backend.create_embedding_job(lines(1), display_name="someone-else-1")
    found = await backend.find_jobs_by_display_name(["asemantic-f-1", "asemantic-f-2", "gone"])
    assert sorted((s.display_name, s.name) for s in found) == [
        ("asemantic-f-1", first.name),
        ("asemantic-f-2", second.name),
    ]
    assert all(s.state == "JOB_STATE_PENDING" and not s.done for s in found)
    assert await backend.find_jobs_by_display_name(["asemantic-f-3"]) == []
    assert await backend.find_jobs_by_display_name([]) == []


async def test_find_files_by_prefix_finds_the_input_files_only(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    first = await backend.create_embedding_job(lines(1), display_name="asemantic-p-1")
    second = await backend.create_embedding_job(lines(1), display_name="asemantic-p-2")
    await backend.create_embedding_job(lines(1), display_name="asemantic-q-1")
    driver.complete_all()  # result files have no display name: never found by prefix
    found = await backend.find_files_by_prefix("asemantic-p-")
    assert sorted((f.display_name, f.name) for f in found) == [
        ("asemantic-p-1", first.input_file),
        ("asemantic-p-2", second.input_file),
    ]
    assert len(await backend.find_files_by_prefix("asemantic-")) == 3
    assert await backend.find_files_by_prefix("nobody-") == []


async def test_cleanup_deletes_the_job_and_files_and_tolerates_a_second_call(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    job = await backend.create_embedding_job(lines(2), display_name="asemantic-k-1")
    kept = await backend.create_embedding_job(lines(2), display_name="asemantic-k-2")
    output = await finished_output(backend, driver, job)
    assert job.input_file is not None
    await backend.cleanup(job.name, files=[job.input_file, output])
    with pytest.raises(ProviderRequestError) as gone:
        await backend.get_job_status(job.name)
    assert gone.value.status == 404
    with pytest.raises(ProviderRequestError) as no_file:
        await read_all(backend, output, keys_of(lines(2)), ResultCounts())
    assert no_file.value.status == 404
    assert [f.name for f in await backend.find_files_by_prefix("asemantic-k-")] == [kept.input_file]
    await backend.cleanup(job.name, files=[job.input_file, output])  # all gone: no error
    await backend.cleanup(None, files=["files/neverexisted"])
    assert (await backend.get_job_status(kept.name)).name == kept.name


async def test_cleanup_of_the_job_alone_keeps_its_result_file(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    sent = lines(2)
    job = await backend.create_embedding_job(sent, display_name="asemantic-k-3")
    output = await finished_output(backend, driver, job)
    await backend.cleanup(job.name, files=[])
    results = await read_all(backend, output, keys_of(sent), ResultCounts())
    assert len(results) == 2


async def test_cancel_ends_an_unfinished_job_and_refuses_a_finished_one(
    backend: BatchBackend,
) -> None:
    job = await backend.create_embedding_job(lines(2), display_name="asemantic-x-1")
    await backend.cancel(job.name)
    status = await backend.get_job_status(job.name)
    assert (status.state, status.done, status.output_file) == ("JOB_STATE_CANCELLED", True, None)
    with pytest.raises(ProviderRequestError) as refused:
        await backend.cancel(job.name)
    assert refused.value.status == 400


async def test_unknown_jobs_and_files_are_404(backend: BatchBackend) -> None:
    for call in (
        lambda: backend.get_job_status("batches/doesnotexist0000"),
        lambda: backend.cancel("batches/doesnotexist0000"),
    ):
        with pytest.raises(ProviderRequestError) as missing:
            await call()
        assert missing.value.status == 404
    with pytest.raises(ProviderRequestError) as no_file:
        await read_all(backend, "files/doesnotexist", {"1-000000000001"}, ResultCounts())
    assert no_file.value.status == 404


async def test_an_input_file_cannot_be_read_as_results(backend: BatchBackend) -> None:
    job = await backend.create_embedding_job(lines(1), display_name="asemantic-u-1")
    assert job.input_file is not None
    with pytest.raises(ProviderRequestError) as refused:
        await read_all(backend, job.input_file, keys_of(lines(1)), ResultCounts())
    assert refused.value.status == 400


async def test_aclose_is_idempotent_and_later_calls_are_refused(backend: BatchBackend) -> None:
    job = await backend.create_embedding_job(lines(1), display_name="asemantic-z-1")
    await backend.aclose()
    await backend.aclose()
    with pytest.raises(StoreClosedError):
        await backend.get_job_status(job.name)
    with pytest.raises(StoreClosedError):
        await backend.find_files_by_prefix("asemantic-")


async def test_upload_then_create_from_the_file(
    backend: BatchBackend, driver: BackendDriver
) -> None:
    sent = lines(3)
    input_file = await backend.upload_input(sent, display_name="asemantic-u-1")
    assert input_file.startswith("files/")
    job = await backend.create_from_file(input_file, display_name="asemantic-u-1")
    assert (job.input_file, job.display_name) == (input_file, "asemantic-u-1")
    output = await finished_output(backend, driver, job)
    counts = ResultCounts()
    results = await read_all(backend, output, [line.key for line in sent], counts)
    assert sorted(r.key for r in results) == sorted(keys_of(sent))
    assert (counts.keyless, counts.by_position) == (0, 0)


async def test_status_fields_for_odd_answers_default_to_none(
    backend: BatchBackend,
) -> None:
    job = await backend.create_embedding_job(lines(1), display_name="asemantic-u-2")
    status = await backend.get_job_status(job.name)
    assert (status.error_code, status.error_message) == (None, None)
    assert status.state == "JOB_STATE_PENDING" and not status.done
