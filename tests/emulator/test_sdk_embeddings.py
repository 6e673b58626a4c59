"""google-genai's synchronous embeddings against the emulator."""

from __future__ import annotations

import numpy as np
import pytest
from google import genai
from google.genai import errors

from asemantic.testing.emulator import GeminiEmulator

from .conftest import MODEL


def _norm(values: list[float] | None) -> float:
    return float(np.linalg.norm(np.asarray(values)))


async def test_embed_content_defaults_to_unit_3072_vectors(client: genai.Client) -> None:
    response = await client.aio.models.embed_content(
        model=MODEL, contents=["the cat sat", "on the mat"]
    )
    assert response.embeddings is not None
    assert len(response.embeddings) == 2
    for embedding in response.embeddings:
        assert embedding.values is not None
        assert len(embedding.values) == 3072
        assert _norm(embedding.values) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("dimensions", [128, 768, 1536])
async def test_smaller_vectors_are_not_normalised(client: genai.Client, dimensions: int) -> None:
    texts = ["a", "one two three", "a much longer text with many different words in it"]
    response = await client.aio.models.embed_content(
        model=MODEL, contents=texts, config={"output_dimensionality": dimensions}
    )
    assert response.embeddings is not None
    norms = [_norm(embedding.values) for embedding in response.embeddings]
    assert all(len(e.values or []) == dimensions for e in response.embeddings)
    assert all(0.3 <= norm <= 0.9 for norm in norms)
    assert len(set(norms)) == len(norms)  # lengths vary, so forgetting to normalise shows


async def test_same_text_same_vector_and_shared_words_are_closer(
    client: genai.Client, emulator: GeminiEmulator
) -> None:
    texts = ["solar panels on the roof", "solar panels on the roof", "roof panels", "pasta recipe"]
    response = await client.aio.models.embed_content(model=MODEL, contents=texts)
    assert response.embeddings is not None
    vectors = [np.asarray(e.values) for e in response.embeddings]
    assert vectors[0].tolist() == vectors[1].tolist()
    assert vectors[0].tolist() == emulator.embed("solar panels on the roof")
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[3]


async def test_more_than_100_texts_is_a_400(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(model=MODEL, contents=[f"t{i}" for i in range(101)])
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "at most 100 requests can be in one batch" in (caught.value.message or "")
    ok = await client.aio.models.embed_content(model=MODEL, contents=[f"t{i}" for i in range(100)])
    assert ok.embeddings is not None
    assert len(ok.embeddings) == 100


async def test_a_text_over_2048_tokens_fails_the_call(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(model=MODEL, contents=["short", "word " * 2100])
    assert caught.value.code == 400
    assert "exceeds the maximum number of tokens allowed (2048)" in (caught.value.message or "")


@pytest.mark.parametrize("dimensions", [64, 127, 3073, 4096])
async def test_dimensionality_outside_128_3072_is_a_400(
    client: genai.Client, dimensions: int
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(
            model=MODEL, contents=["x"], config={"output_dimensionality": dimensions}
        )
    assert caught.value.code == 400


async def test_unknown_model_is_a_404(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(model="text-embedding-004", contents=["x"])
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


async def test_an_unknown_field_is_a_400_naming_it(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(
            model=MODEL,
            contents=["x"],
            config={"http_options": {"extra_body": {"requests": [{"contents": []}]}}},
        )
    assert caught.value.code == 400
    assert caught.value.message == (
        "Invalid JSON payload received. Unknown name \"contents\" at 'requests[0]': "
        "Cannot find field."
    )
    violations = caught.value.details["error"]["details"][0]["fieldViolations"]
    assert violations[0]["field"] == "requests[0]"


async def test_task_type_and_title_are_accepted(client: genai.Client) -> None:
    response = await client.aio.models.embed_content(
        model=MODEL,
        contents=["body text"],
        config={"task_type": "RETRIEVAL_DOCUMENT", "title": "A title"},
    )
    assert response.embeddings is not None
    assert len(response.embeddings[0].values or []) == 3072
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(
            model=MODEL, contents=["x"], config={"task_type": "NOT_A_TASK"}
        )
    assert caught.value.code == 400
