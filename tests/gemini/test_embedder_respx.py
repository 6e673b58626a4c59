"""GeminiEmbedder at the transport level: respx sees the SDK's traffic through an
injected ``httpx.AsyncClient`` (google-genai's own default stack is httpx2)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import respx

from asemantic import (
    AuthenticationError,
    EmbeddingSpace,
    GeminiEmbedder,
    GoogleKeyring,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    RetryConfig,
)
from asemantic.ports import EmbedRequest

BASE = "https://gemini.test"
URL = f"{BASE}/v1beta/models/gemini-embedding-001:batchEmbedContents"
KEY = "respx-secret-key-123"


def _answer(request: httpx.Request, dims: int = 8) -> httpx.Response:
    body = json.loads(request.content)
    vectors = [{"values": [float(i + 1)] * dims} for i, _ in enumerate(body["requests"])]
    return httpx.Response(200, json={"embeddings": vectors})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _embedder(
    http: httpx.AsyncClient, *, attempts: int = 3, timeout: float = 5.0
) -> GeminiEmbedder:
    return GeminiEmbedder(
        GoogleKeyring(KEY),
        space=EmbeddingSpace(dimensions=8),
        base_url=BASE,
        retry=RetryConfig(attempts=attempts, initial_delay=0.0, max_delay=0.05, timeout=timeout),
        http_client=http,
    )


@respx.mock
async def test_request_shape_key_header_and_normalisation(http: httpx.AsyncClient) -> None:
    route = respx.post(URL).mock(side_effect=_answer)
    embedder = _embedder(http)
    vectors = await embedder.embed_documents(
        [EmbedRequest(text="alpha", title="Doc"), EmbedRequest(text="beta", title="Doc")]
    )
    request = route.calls.last.request
    assert request.headers["x-goog-api-key"] == KEY
    body = json.loads(request.content)
    first = body["requests"][0]
    assert first["taskType"] == "RETRIEVAL_DOCUMENT"
    assert first["title"] == "Doc"
    assert first["outputDimensionality"] == 8
    assert first["content"]["parts"] == [{"text": "alpha"}]
    for blob in vectors:
        assert np.linalg.norm(np.frombuffer(blob, dtype="<f4")) == pytest.approx(1.0, abs=1e-6)
    query = await embedder.embed_query("question")
    assert json.loads(route.calls.last.request.content)["requests"][0]["taskType"] == (
        "RETRIEVAL_QUERY"
    )
    assert len(query) == 8 * 4
    await embedder.aclose()
    assert not http.is_closed  # the caller's client stays the caller's


@respx.mock
async def test_at_most_100_texts_per_call_in_order(http: httpx.AsyncClient) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        texts = [r["content"]["parts"][0]["text"] for r in json.loads(request.content)["requests"]]
        assert len(texts) <= 100
        return httpx.Response(
            200, json={"embeddings": [{"values": [float(t), 1.0] + [0.0] * 6} for t in texts]}
        )

    route = respx.post(URL).mock(side_effect=answer)
    embedder = _embedder(http)
    requests = [EmbedRequest(text=str(i + 1)) for i in range(250)]
    vectors = await embedder.embed_documents(requests)
    assert route.call_count == 3
    firsts = [np.frombuffer(v, dtype="<f4") for v in vectors]
    ratios = [float(v[0] / v[1]) for v in firsts]
    assert ratios == pytest.approx([float(i + 1) for i in range(250)], rel=1e-5)
    await embedder.aclose()


@respx.mock
async def test_retries_429_then_succeeds_honouring_retry_after(http: httpx.AsyncClient) -> None:
    error = {
        "error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}
    }
    answers = [
        httpx.Response(429, json=error, headers={"Retry-After": "0.01"}),
        httpx.Response(503, json={"error": {"code": 503, "status": "UNAVAILABLE"}}),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else _answer(request)

    route = respx.post(URL).mock(side_effect=answer)
    embedder = _embedder(http, attempts=3)
    (vector,) = await embedder.embed_documents([EmbedRequest(text="x")])
    assert route.call_count == 3
    assert len(vector) == 32
    await embedder.aclose()


@respx.mock
async def test_a_429s_retry_info_sets_the_wait(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's 429 says how long to wait in google.rpc.RetryInfo, not in Retry-After."""
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.04s"}
    error = {
        "error": {
            "code": 429,
            "message": "Resource exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"}, retry_info],
        }
    }
    answers = [httpx.Response(429, json=error)]
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    def answer(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else _answer(request)

    route = respx.post(URL).mock(side_effect=answer)
    embedder = _embedder(http, attempts=3)  # full jitter alone would wait 0 s
    await embedder.embed_documents([EmbedRequest(text="x")])
    assert route.call_count == 2
    assert waits == [pytest.approx(0.04)]
    await embedder.aclose()


@respx.mock
async def test_rate_limit_after_the_budget(http: httpx.AsyncClient) -> None:
    error = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    route = respx.post(URL).mock(return_value=httpx.Response(429, json=error))
    embedder = _embedder(http, attempts=2)
    with pytest.raises(RateLimitError) as info:
        await embedder.embed_query("x")
    assert info.value.status == 429
    assert route.call_count == 2
    await embedder.aclose()


@respx.mock
async def test_timeouts_are_retried_then_reported(http: httpx.AsyncClient) -> None:
    route = respx.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    embedder = _embedder(http, attempts=3)
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await embedder.embed_query("x")
    assert route.call_count == 3
    await embedder.aclose()


@respx.mock
async def test_bad_key_is_an_authentication_error_without_the_key(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    route = respx.post(URL).mock(return_value=httpx.Response(400, json=body))
    embedder = _embedder(http)
    with pytest.raises(AuthenticationError) as info:
        await embedder.embed_query("x")
    assert route.call_count == 1  # not retried
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # the SDK error (with the request) is gone
    assert KEY not in caplog.text
    assert KEY not in repr(embedder)
    await embedder.aclose()


@respx.mock
async def test_other_4xx_is_a_request_error_and_wrong_dimensions_refused(
    http: httpx.AsyncClient,
) -> None:
    respx.post(URL).mock(
        side_effect=[
            httpx.Response(
                400, json={"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
            ),
            httpx.Response(200, json={"embeddings": [{"values": [1.0, 2.0]}]}),
        ]
    )
    embedder = _embedder(http)
    with pytest.raises(ProviderRequestError):
        await embedder.embed_query("x")
    with pytest.raises(Exception, match="dimensions"):
        await embedder.embed_query("x")
    await embedder.aclose()


@respx.mock
async def test_a_failing_call_among_many_raises_plainly(http: httpx.AsyncClient) -> None:
    body = {"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}
    respx.post(URL).mock(return_value=httpx.Response(403, json=body))
    embedder = _embedder(http)
    with pytest.raises(AuthenticationError):  # not an ExceptionGroup
        await embedder.embed_documents([EmbedRequest(text=str(i)) for i in range(250)])
    await embedder.aclose()
