"""google-genai's batch embedding calls against the emulator, in-process and over loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google import genai
from google.genai import errors, types

from asemantic.testing.emulator import GeminiEmulator

from .conftest import MODEL, embed_line, model_line, parse_jsonl, write_jsonl


async def _upload(client: genai.Client, path: Path) -> str:
    uploaded = await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    return uploaded.name


async def _get(client: genai.Client, name: str | None) -> types.BatchJob:
    assert name is not None
    return await client.aio.batches.get(name=name)


async def test_a_file_job_runs_pending_running_succeeded(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    lines = [
        embed_line("k1", "solar power", output_dimensionality=768, task_type="RETRIEVAL_DOCUMENT"),
        embed_line("k2", "wind power", outputDimensionality=768, taskType="RETRIEVAL_DOCUMENT"),
        model_line("k3", "x", f"models/{MODEL}"),
    ]
    file_name = await _upload(client, write_jsonl(tmp_path / "in.jsonl", lines))
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": file_name}, config={"display_name": "nightly"}
    )
    assert job.name is not None
    assert job.name.startswith("batches/")
    assert job.state == types.JobState.JOB_STATE_PENDING
    assert job.display_name == "nightly"
    assert job.model == f"models/{MODEL}"
    assert not job.done
    assert job.dest is None

    emulator.advance(10)
    assert (await _get(client, job.name)).state == types.JobState.JOB_STATE_RUNNING
    emulator.advance(60)
    done = await _get(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.done
    assert done.end_time is not None
    assert done.dest is not None
    assert done.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"

    results = parse_jsonl(await client.aio.files.download(file=done.dest.file_name))
    assert [line["key"] for line in results] == ["k1", "k2", "k3"]
    assert [len(line["response"]["embedding"]["values"]) for line in results] == [768, 768, 3072]
    assert results[0]["response"]["usageMetadata"]["promptTokenCount"] > 0


async def test_inline_requests_come_back_inline_in_order(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    texts = ["alpha beta", "gamma", "alpha beta"]
    job = await client.aio.batches.create_embeddings(
        model=MODEL,
        src={"inlined_requests": {"contents": texts, "config": {"output_dimensionality": 256}}},
        config={"display_name": "inline"},
    )
    emulator.complete_all()
    done = await _get(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    responses = done.dest.inlined_embed_content_responses
    assert responses is not None
    vectors = []
    for item in responses:
        assert item.response is not None
        assert item.response.embedding is not None
        vectors.append(item.response.embedding.values)
    assert [len(vector or []) for vector in vectors] == [256, 256, 256]
    assert vectors[0] == vectors[2]
    assert vectors[0] == emulator.embed("alpha beta", dimensions=256)
    assert vectors[0] != vectors[1]


async def test_list_paginates_and_cancel_and_delete(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    names = []
    for index in range(5):
        job = await client.aio.batches.create_embeddings(
            model=MODEL,
            src={"inlined_requests": {"contents": [f"text {index}"]}},
            config={"display_name": f"job-{index}"},
        )
        names.append(job.name)
    pager = await client.aio.batches.list(config={"page_size": 2})
    listed = [job async for job in pager]
    assert [job.name for job in listed] == list(reversed(names))
    assert all(job.state == types.JobState.JOB_STATE_PENDING for job in listed)
    assert len(emulator.requests_to("batches.list")) == 3

    assert names[0] is not None
    await client.aio.batches.cancel(name=names[0])
    cancelled = await _get(client, names[0])
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.done
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.cancel(name=names[0])
    assert caught.value.code == 400
    assert caught.value.status == "FAILED_PRECONDITION"

    deleted = await client.aio.batches.delete(name=names[0])
    assert deleted.error is None
    with pytest.raises(errors.ClientError) as caught:
        await _get(client, names[0])
    assert caught.value.code == 404
    assert [info.name for info in emulator.batches] == names[1:]


async def test_wrongly_shaped_lines_are_rejected_at_creation(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    good = embed_line("ok", "fine text")
    wrong = {
        "key": "bad",
        "request": {
            "model": f"models/{MODEL}",
            "contents": [{"parts": [{"text": "hello"}]}],
            "config": {"output_dimensionality": 768},
        },
    }
    file_name = await _upload(client, write_jsonl(tmp_path / "in.jsonl", [good, wrong]))
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create_embeddings(
            model=MODEL, src={"file_name": file_name}, config={"display_name": "wrong"}
        )
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message is not None
    assert caught.value.message.startswith("Error on line 2: invalid JSON, near column ")
    assert caught.value.message.endswith("no such field: 'contents'")
    assert emulator.batches == ()


async def test_a_file_that_is_not_jsonl_at_all_fails_the_job(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("key,text\na,hello\n")
    uploaded = await client.aio.files.upload(file=path, config={"mime_type": "application/jsonl"})
    assert uploaded.name is not None
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": uploaded.name}, config={"display_name": "csv"}
    )
    emulator.complete_all()
    failed = await _get(client, job.name)
    assert failed.state == types.JobState.JOB_STATE_FAILED
    assert failed.done
    assert failed.dest is None


async def test_semantic_line_problems_become_error_lines(
    client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    lines = [
        embed_line("long", "word " * 2100),
        embed_line("small", "x", output_dimensionality=64),
        model_line("other", "x", "models/other"),
        embed_line("empty", "   "),
        embed_line("good", "fine"),
    ]
    file_name = await _upload(client, write_jsonl(tmp_path / "in.jsonl", lines))
    job = await client.aio.batches.create_embeddings(
        model=MODEL, src={"file_name": file_name}, config={"display_name": "mixed"}
    )
    emulator.complete_all()
    done = await _get(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.file_name is not None
    results = parse_jsonl(await client.aio.files.download(file=done.dest.file_name))
    assert [line["key"] for line in results] == ["long", "small", "other", "empty", "good"]
    for line in results[:4]:
        assert line["error"]["code"] == 400
        assert line["error"]["status"] == "INVALID_ARGUMENT"
        assert "response" not in line
    assert "2048" in results[0]["error"]["message"]
    assert np.linalg.norm(results[4]["response"]["embedding"]["values"]) == pytest.approx(1.0)


async def test_create_errors(client: genai.Client, tmp_path: Path) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create_embeddings(
            model="text-embedding-004",
            src={"inlined_requests": {"contents": ["x"]}},
            config={"display_name": "x"},
        )
    assert caught.value.code == 404
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create_embeddings(
            model=MODEL, src={"file_name": "files/doesnotexist"}, config={"display_name": "x"}
        )
    assert caught.value.code == 403
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.batches.create_embeddings(
            model=MODEL, src={"inlined_requests": {"contents": ["x"]}}
        )
    assert caught.value.code == 400
    assert "display_name" in (caught.value.message or "")


async def test_create_embeddings_refuses_a_bare_file_name(client: genai.Client) -> None:
    with pytest.raises(ValueError, match="Unsupported source type"):
        await client.aio.batches.create_embeddings(
            model=MODEL,
            src="files/abc",  # type: ignore[arg-type]
        )
