"""The emulated gemini-embedding-2, through the real google-genai SDK: it ignores
``taskType``/``title``, returns one vector per content however many parts it has,
reads up to 8,192 tokens and normalises reduced sizes; batch jobs work as for
gemini-embedding-001 (an assumption the emulator states)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google import genai
from google.genai import errors, types

from asemantic.domain.models import task_text
from asemantic.testing.emulator import GeminiEmulator

from .conftest import MODEL, embed_line, parse_jsonl, write_jsonl

MODEL_2 = "gemini-embedding-2"


def _content(text: str) -> types.Content:
    return types.Content(parts=[types.Part(text=text)], role="user")


async def _vectors(
    client: genai.Client, model: str, contents: list[types.ContentUnion], **config: Any
) -> list[list[float]]:
    response = await client.aio.models.embed_content(
        model=model, contents=contents, config=types.EmbedContentConfig.model_validate(config)
    )
    assert response.embeddings is not None
    return [list(embedding.values or []) for embedding in response.embeddings]


async def test_a_list_of_strings_is_one_vector_and_one_content_per_text_is_one_each(
    client: genai.Client,
) -> None:
    texts = ["refund policy", "vacation days", "server outage"]
    # The SDK merges a list of strings into one multi-part content for this model.
    merged = await _vectors(client, MODEL_2, list(texts))
    assert len(merged) == 1
    joined = await _vectors(client, MODEL_2, [_content("\n".join(texts))])
    assert merged == joined  # the parts are read as one text
    separate = await _vectors(client, MODEL_2, [_content(text) for text in texts])
    assert len(separate) == 3
    assert separate[0] != merged[0]
    # gemini-embedding-001 gets one content per string from the SDK.
    assert len(await _vectors(client, MODEL, list(texts))) == 3


async def test_task_type_and_title_are_ignored(client: genai.Client) -> None:
    text = [_content("how do refunds work")]
    plain = await _vectors(client, MODEL_2, list(text), output_dimensionality=768)
    as_query = await _vectors(
        client, MODEL_2, list(text), output_dimensionality=768, task_type="RETRIEVAL_QUERY"
    )
    as_document = await _vectors(
        client,
        MODEL_2,
        list(text),
        output_dimensionality=768,
        task_type="RETRIEVAL_DOCUMENT",
        title="Refunds and billing",
    )
    assert plain == as_query == as_document
    # gemini-embedding-001 embeds a document's title with its text.
    one_query = await _vectors(client, MODEL, list(text), task_type="RETRIEVAL_QUERY")
    one_document = await _vectors(
        client, MODEL, list(text), task_type="RETRIEVAL_DOCUMENT", title="Refunds and billing"
    )
    assert one_query != one_document


async def test_the_task_prefix_is_what_makes_query_and_document_differ(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    text = "how do refunds work"
    query = task_text("RETRIEVAL_QUERY", text)
    document = task_text("RETRIEVAL_DOCUMENT", text, title="Refunds")
    vectors = await _vectors(
        client, MODEL_2, [_content(query), _content(document)], output_dimensionality=768
    )
    assert vectors[0] != vectors[1]
    assert vectors[0] == emulator.embed(query, dimensions=768, model=MODEL_2)
    assert vectors[1] == emulator.embed(
        document, dimensions=768, model=MODEL_2, task_type="RETRIEVAL_DOCUMENT", title="x"
    )


@pytest.mark.parametrize("dimensions", [128, 768, 1536, 3072])
async def test_every_size_comes_back_unit_length(client: genai.Client, dimensions: int) -> None:
    texts = ["a", "one two three", "a much longer text with many different words in it"]
    vectors = await _vectors(
        client, MODEL_2, [_content(t) for t in texts], output_dimensionality=dimensions
    )
    for values in vectors:
        assert len(values) == dimensions
        assert float(np.linalg.norm(values)) == pytest.approx(1.0, abs=1e-6)


async def test_the_input_limit_is_8192_tokens(client: genai.Client) -> None:
    long_text = "word " * 3000  # 3,000 tokens: over gemini-embedding-001's limit
    (values,) = await _vectors(client, MODEL_2, [_content(long_text)])
    assert len(values) == 3072
    with pytest.raises(errors.ClientError) as refused_001:
        await _vectors(client, MODEL, [_content(long_text)])
    assert "allowed (2048)" in (refused_001.value.message or "")
    with pytest.raises(errors.ClientError) as caught:
        await _vectors(client, MODEL_2, [_content("short"), _content("word " * 8200)])
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == (
        "The input token count (8200) exceeds the maximum number of tokens allowed (8192)."
    )


async def test_a_batch_job_for_gemini_embedding_2(
    local_client: genai.Client, emulator: GeminiEmulator, tmp_path: Path
) -> None:
    lines = [
        embed_line("a", task_text("RETRIEVAL_DOCUMENT", "refund rules", title="Billing")),
        embed_line("b", "word " * 3000, outputDimensionality=768),
        embed_line("c", "word " * 8200),
        # taskType and title are accepted on the line and change nothing.
        embed_line("d", "refund rules", taskType="RETRIEVAL_DOCUMENT", title="Billing"),
        embed_line("e", "refund rules"),
    ]
    uploaded = await local_client.aio.files.upload(
        file=str(write_jsonl(tmp_path / "in.jsonl", lines)),
        config={"mime_type": "application/jsonl"},
    )
    assert uploaded.name
    job = await local_client.aio.batches.create_embeddings(
        model=MODEL_2, src={"file_name": uploaded.name}, config={"display_name": "g2"}
    )
    assert job.name
    emulator.complete_all()
    done = await local_client.aio.batches.get(name=job.name)
    assert done.dest is not None and done.dest.file_name
    results = {
        line["key"]: line for line in parse_jsonl(emulator.file_content(done.dest.file_name))
    }
    values = {
        key: line["response"]["embedding"]["values"]
        for key, line in results.items()
        if "response" in line
    }
    assert set(values) == {"a", "b", "d", "e"}
    assert len(values["b"]) == 768
    assert float(np.linalg.norm(values["b"])) == pytest.approx(1.0, abs=1e-6)
    assert values["d"] == values["e"]
    assert values["a"] != values["e"]
    assert "allowed (8192)" in results["c"]["error"]["message"]
