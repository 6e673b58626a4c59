"""The fault script, seen through the real SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from asemantic.testing.emulator import (
    EmulatorRequest,
    Fault,
    GeminiEmulator,
    JobFault,
    LineFault,
    ResultCorruption,
)

from .conftest import API_KEY, MODEL, embed_line, parse_jsonl, raw, write_jsonl


async def _inline_job(client: genai.Client, name: str, texts: list[str]) -> str:
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"inlined_requests": {"contents": texts}}, config={"display_name": name}
    )
    assert job.name is not None
    return job.name


async def _file_job(client: genai.Client, tmp_path: Path, name: str, count: int) -> str:
    lines = [embed_line(f"k{i}", f"text {i}", output_dimensionality=128) for i in range(count)]
    path = write_jsonl(tmp_path / f"{name}.jsonl", lines)
    uploaded = await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": uploaded.name}, config={"display_name": name}
    )
    assert job.name is not None
    return job.name


async def _result_lines(client: genai.Client, job_name: str) -> list[str]:
    job = await client.aio.batches.get(name=job_name)
    assert job.dest is not None
    assert job.dest.file_name is not None
    data = await client.aio.files.download(file=job.dest.file_name)
    return data.decode().split("\n")[:-1]


@pytest.mark.parametrize(
    ("status", "kind", "name"),
    [
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, errors.ServerError, "INTERNAL"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
async def test_status_faults_for_the_next_calls(
    client: genai.Client,
    emulator: GeminiEmulator,
    status: int,
    kind: type[errors.APIError],
    name: str,
) -> None:
    job_name = await _inline_job(client, "s", ["x"])
    emulator.faults.add(Fault(endpoint="batches.get", status=status, times=2))
    for _ in range(2):
        with pytest.raises(kind) as caught:
            await client.aio.batches.get(name=job_name)
        assert caught.value.code == status
        assert caught.value.status == name
    assert (await client.aio.batches.get(name=job_name)).name == job_name
    statuses = [r.status for r in emulator.requests_to("batches.get")]
    assert statuses == [status, status, 200]
    assert emulator.requests_to("batches.get")[0].fault == f"status {status}"


async def test_the_sdk_retries_through_a_scripted_429(emulator: GeminiEmulator) -> None:
    options = emulator.http_options(
        retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02)
    )
    client = genai.Client(api_key=API_KEY, vertexai=False, http_options=options)
    emulator.faults.add(Fault(endpoint="models.batchEmbedContents", status=429, times=2))
    response = await client.aio.models.embed_content(model=MODEL, contents=["retry me"])
    assert response.embeddings is not None
    assert [r.status for r in emulator.requests] == [429, 429, 200]
    await client.aio.aclose()


async def test_a_429_can_carry_retry_info(client: genai.Client, emulator: GeminiEmulator) -> None:
    emulator.faults.add(Fault(endpoint="batches.list", status=429, retry_delay=30))
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.list()
    details = caught.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"} in details


async def test_lost_response_applies_the_change(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.faults.add(Fault(endpoint="batches.create", lose_response=True))
    with pytest.raises(errors.ServerError) as caught:
        await _inline_job(client, "lost", ["x"])
    assert caught.value.code == 503
    assert [info.display_name for info in emulator.batches] == ["lost"]


async def test_a_dropped_connection_after_the_change(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    job_name = await _inline_job(client, "drop", ["x"])
    emulator.faults.add(Fault(endpoint="batches.delete", lose_response=True, drop_connection=True))
    with pytest.raises(httpx2.RemoteProtocolError):
        await client.aio.batches.delete(name=job_name)
    assert emulator.batches == ()
    assert emulator.requests_to("batches.delete")[0].dropped


async def test_a_dropped_connection_before_the_change(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.faults.add(Fault(endpoint="batches.create", drop_connection=True))
    with pytest.raises(httpx2.RemoteProtocolError):
        await _inline_job(client, "never", ["x"])
    assert emulator.batches == ()


async def test_upload_chunk_faults(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [embed_line("a", "x")])
    emulator.faults.add(Fault(endpoint="files.upload_chunk", status=503))
    with pytest.raises(errors.ServerError):
        await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert emulator.files == ()
    emulator.faults.add(Fault(endpoint="files.upload_chunk", lose_response=True, status=500))
    with pytest.raises(errors.ServerError):
        await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert len(emulator.files) == 1


async def test_latency_and_concurrency_peaks(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    names = [await _inline_job(client, f"job-{i}", ["x"]) for i in range(60)]
    emulator.faults.add(Fault(endpoint="batches.get", latency=0.02, times=60))
    limit = asyncio.Semaphore(50)

    async def poll(name: str) -> None:
        async with limit:
            await client.aio.batches.get(name=name)

    await asyncio.gather(*(poll(name) for name in names))
    assert len(emulator.requests_to("batches.get")) == 60
    assert 1 < emulator.peak_in_flight("batches.get") <= 50
    assert emulator.peak_in_flight("batches.create") == 1
    assert emulator.requests_to("batches.get")[0].fault == "latency 0.02s"


async def test_job_outcomes_by_name_and_for_the_next_jobs(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.faults.add(
        JobFault(outcome="FAILED", display_name="doom*"),
        JobFault(outcome="EXPIRED", times=2),
        JobFault(outcome="CANCELLED"),
    )
    names = [await _inline_job(client, name, ["x"]) for name in ("a", "doomed", "b", "c", "d")]
    emulator.complete_all()
    states = [(await client.aio.batches.get(name=name)).state for name in names]
    assert states == [
        types.JobState.JOB_STATE_EXPIRED,
        types.JobState.JOB_STATE_FAILED,
        types.JobState.JOB_STATE_EXPIRED,
        types.JobState.JOB_STATE_CANCELLED,
        types.JobState.JOB_STATE_SUCCEEDED,
    ]
    failed = await client.aio.batches.get(name=names[1])
    assert failed.done
    assert failed.dest is None
    assert emulator.faults.pending() == ()


async def test_line_faults_by_key_and_fraction(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    emulator.faults.add(
        LineFault(keys=("k0",), code=400, message="bad line"),
        LineFault(fraction=0.5, code=503),
    )
    job_name = await _file_job(client, tmp_path, "lines", 6)
    emulator.complete_all()
    lines = [parse_jsonl(line.encode())[0] for line in await _result_lines(client, job_name)]
    assert [line["key"] for line in lines] == [f"k{i}" for i in range(6)]
    assert lines[0]["error"] == {"code": 400, "message": "bad line", "status": "INVALID_ARGUMENT"}
    assert [line.get("error", {}).get("code") for line in lines] == [400, 503, None, 503, None, 503]
    assert emulator.batch(job_name).failed_count == 4


async def test_line_faults_on_inline_jobs_use_positions(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.faults.add(LineFault(keys=("1",), code=429, display_name="inline"))
    job_name = await _inline_job(client, "inline", ["a", "b", "c"])
    emulator.complete_all()
    job = await client.aio.batches.get(name=job_name)
    assert job.dest is not None
    responses = job.dest.inlined_embed_content_responses
    assert responses is not None
    assert [item.error.code if item.error else None for item in responses] == [None, 429, None]


async def test_every_inline_line_failing_lands_in_inlined_responses(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    emulator.faults.add(LineFault(fraction=1.0, code=500))
    job_name = await _inline_job(client, "all-bad", ["a", "b"])
    emulator.complete_all()
    job = await client.aio.batches.get(name=job_name)
    assert job.dest is not None
    assert job.dest.inlined_embed_content_responses is None
    assert job.dest.inlined_responses is not None
    assert len(job.dest.inlined_responses) == 2


async def test_malformed_result_lines(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    emulator.faults.add(
        ResultCorruption(
            garbage_lines=2,
            blank_lines=1,
            unknown_key_lines=1,
            unknown_fields=True,
            missing_keys=("k3",),
            missing_lines=1,
        )
    )
    job_name = await _file_job(client, tmp_path, "corrupt", 8)
    emulator.complete_all()
    lines = await _result_lines(client, job_name)
    assert lines.count("") == 1
    parsed = []
    garbage = 0
    for line in lines:
        if not line:
            continue
        try:
            parsed.extend(parse_jsonl(line.encode()))
        except ValueError:
            garbage += 1
    assert garbage == 2
    keys = [line["key"] for line in parsed]
    assert "unknown-key-0" in keys
    assert "k3" not in keys
    assert len([key for key in keys if key.startswith("k")]) == 6  # 8 - k3 - one more
    assert all("emulatorExtra" in line for line in parsed if line["key"].startswith("k"))


def test_faults_validate_and_are_consumed_in_order() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        Fault(endpoint="batches.poll", status=429)
    with pytest.raises(ValueError, match="needs"):
        Fault(endpoint="batches.get")
    with pytest.raises(ValueError):
        LineFault(code=400)
    with pytest.raises(ValueError):
        ResultCorruption()
    emulator = GeminiEmulator()
    emulator.faults.add(Fault(endpoint="*", status=500), Fault(endpoint="files.list", status=429))
    assert raw(emulator, "GET", "/v1beta/files").status == 500
    assert raw(emulator, "GET", "/v1beta/files").status == 429
    assert raw(emulator, "GET", "/v1beta/files").status == 200
    assert emulator.faults.pending() == ()
    emulator.faults.add(Fault(endpoint="files.get", status=503, times=3))
    assert emulator.faults.pending()[0][1] == 3
    emulator.faults.clear()
    assert emulator.faults.pending() == ()


async def test_a_caller_giving_up_during_latency_changes_nothing(
    emulator: GeminiEmulator,
) -> None:
    emulator.faults.add(Fault(endpoint="batches.list", latency=5.0))
    request = EmulatorRequest(method="GET", path="/v1beta/batches", headers={"x-goog-api-key": "k"})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await emulator.handle_async(request)
    assert [r.status for r in emulator.requests] == [0]
    assert emulator.peak_in_flight("batches.list") == 1
    assert (await emulator.handle_async(request)).status == 200
