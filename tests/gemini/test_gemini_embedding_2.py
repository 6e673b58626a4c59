"""The Gemini adapters with gemini-embedding-2, on the wire: the real google-genai SDK
talking to the emulator, the requests read where they leave the SDK.

What is checked: every text is its own request (its own content, one part), the task
is a text prefix and no request carries ``taskType`` or ``title``, in the online route
and in the batch route's JSONL. The tests that send the *wrong* shape (a list of texts
merged into one content, ``taskType`` instead of a prefix) show what would catch it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import orjson
import pytest

from asemantic import EmbeddingSpace, GeminiBatchClient, GeminiEmbedder, GoogleKeyring, RetryConfig
from asemantic.adapters.gemini.batch import jsonl_line
from asemantic.errors import ProviderError
from asemantic.ports import BatchLine, EmbedRequest, ResultCounts
from asemantic.testing.emulator import GeminiEmulator

KEY = "g2-default-key-5521"
BATCH_KEY = "g2-batch-key-9034"
SPACE = EmbeddingSpace(model="gemini-embedding-2", dimensions=768)
RETRY = RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.01, timeout=10)

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class Wiretap(httpx2.AsyncBaseTransport):
    """Records each ``batchEmbedContents`` body on its way to the emulator, and can
    rewrite it first (to send a shape the adapter would not)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, rewrite: Rewrite | None = None) -> None:
        self._inner = inner
        self._rewrite = rewrite
        self.bodies: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not request.url.path.endswith(":batchEmbedContents"):
            return await self._inner.handle_async_request(request)
        body = json.loads(await request.aread())
        self.bodies.append(body)
        if self._rewrite is not None:
            body = self._rewrite(body)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        forwarded = httpx2.Request(
            request.method, request.url, headers=headers, content=json.dumps(body).encode()
        )
        return await self._inner.handle_async_request(forwarded)


def _embedder(
    emulator: GeminiEmulator, tap: Wiretap, space: EmbeddingSpace = SPACE
) -> GeminiEmbedder:
    return GeminiEmbedder(
        GoogleKeyring(KEY), space=space, base_url=emulator.base_url, retry=RETRY, transport=tap
    )


def _vector(blob: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.frombuffer(blob, dtype="<f4")


def _expected(emulator: GeminiEmulator, text: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    values = np.asarray(emulator.embed(text, dimensions=768, model="gemini-embedding-2"))
    unit: np.ndarray[Any, np.dtype[np.float64]] = values / np.linalg.norm(values)
    return unit


async def test_online_one_content_per_text_prefix_and_no_task_fields() -> None:
    emulator = GeminiEmulator()
    tap = Wiretap(emulator.async_transport())
    embedder = _embedder(emulator, tap)
    requests = [
        EmbedRequest(text="refunds take five days", title="Billing"),
        EmbedRequest(text="vacation needs approval", title="HR | People"),
        EmbedRequest(text="untitled note"),
    ]
    vectors = await embedder.embed_documents(requests)
    query = await embedder.embed_query("how long do refunds take")
    await embedder.aclose()
    (documents_call, query_call) = tap.bodies  # the titles do not split the call
    sent = documents_call["requests"]
    assert [r["content"]["parts"] for r in sent] == [
        [{"text": "title: Billing | text: refunds take five days"}],
        [{"text": "title: HR People | text: vacation needs approval"}],
        [{"text": "title: none | text: untitled note"}],
    ]
    (query_request,) = query_call["requests"]
    assert query_request["content"]["parts"] == [
        {"text": "task: search result | query: how long do refunds take"}
    ]
    for request in [*sent, query_request]:
        assert "taskType" not in request and "title" not in request
        assert request["outputDimensionality"] == 768
        assert request["model"] == "models/gemini-embedding-2"
    # The vectors are the emulator's for the prefixed texts, normalised.
    for blob, request in zip(vectors, sent, strict=True):
        expected = _expected(emulator, request["content"]["parts"][0]["text"])
        assert _vector(blob) == pytest.approx(expected, abs=1e-6)
    assert float(np.linalg.norm(_vector(query))) == pytest.approx(1.0, abs=1e-6)


async def test_more_than_100_texts_are_split_into_calls_of_one_content_each() -> None:
    emulator = GeminiEmulator()
    tap = Wiretap(emulator.async_transport())
    embedder = _embedder(emulator, tap)
    requests = [EmbedRequest(text=f"note {i} about refunds", title=f"T{i % 3}") for i in range(230)]
    vectors = await embedder.embed_documents(requests)
    await embedder.aclose()
    assert len(vectors) == 230
    assert sorted(len(body["requests"]) for body in tap.bodies) == [30, 100, 100]
    assert all(len(r["content"]["parts"]) == 1 for b in tap.bodies for r in b["requests"])


async def test_gemini_embedding_001_keeps_task_fields_and_no_prefix() -> None:
    emulator = GeminiEmulator()
    tap = Wiretap(emulator.async_transport())
    embedder = _embedder(emulator, tap, EmbeddingSpace(dimensions=768))
    await embedder.embed_documents([EmbedRequest(text="body", title="Guide")])
    await embedder.embed_query("question")
    await embedder.aclose()
    document, query = (body["requests"][0] for body in tap.bodies)
    assert document["content"]["parts"] == [{"text": "body"}]
    assert (document["taskType"], document["title"]) == ("RETRIEVAL_DOCUMENT", "Guide")
    assert query["content"]["parts"] == [{"text": "question"}]
    assert query["taskType"] == "RETRIEVAL_QUERY" and "title" not in query


def _merge_into_one_content(body: dict[str, Any]) -> dict[str, Any]:
    """What the SDK sends for a ``list[str]`` with gemini-embedding-2: one request whose
    content holds every text as a part."""
    first = dict(body["requests"][0])
    parts = [part for request in body["requests"] for part in request["content"]["parts"]]
    first["content"] = {"parts": parts, "role": "user"}
    return {"requests": [first]}


async def test_a_list_merged_into_one_content_is_caught_by_the_vector_count() -> None:
    emulator = GeminiEmulator()
    embedder = _embedder(emulator, Wiretap(emulator.async_transport(), _merge_into_one_content))
    with pytest.raises(ProviderError, match="returned 1 vectors for 3 texts"):
        await embedder.embed_documents([EmbedRequest(text=t) for t in ("a b", "c d", "e f")])
    await embedder.aclose()


def _task_type_instead_of_prefix(body: dict[str, Any]) -> dict[str, Any]:
    """gemini-embedding-001's shape sent to gemini-embedding-2: the prefix taken off the
    text, the task put in ``taskType`` (and ``title``)."""
    requests = []
    for request in body["requests"]:
        (part,) = request["content"]["parts"]
        head, _, text = part["text"].partition(" | ")
        text = text.removeprefix("text: ").removeprefix("query: ")
        shaped = {**request, "content": {"parts": [{"text": text}], "role": "user"}}
        if head.startswith("title: "):
            shaped |= {"taskType": "RETRIEVAL_DOCUMENT", "title": head.removeprefix("title: ")}
        else:
            shaped["taskType"] = "RETRIEVAL_QUERY"
        requests.append(shaped)
    return {"requests": requests}


async def test_task_type_instead_of_a_prefix_makes_query_and_document_vectors_identical() -> None:
    text = "how long do refunds take"
    emulator = GeminiEmulator()
    right = _embedder(emulator, Wiretap(emulator.async_transport()))
    (document,) = await right.embed_documents([EmbedRequest(text=text, title="Billing")])
    query = await right.embed_query(text)
    assert document != query  # the prefixes make the model see two tasks
    wrong = _embedder(emulator, Wiretap(emulator.async_transport(), _task_type_instead_of_prefix))
    (wrong_document,) = await wrong.embed_documents([EmbedRequest(text=text, title="Billing")])
    wrong_query = await wrong.embed_query(text)
    assert wrong_document == wrong_query  # taskType and title are ignored: one vector
    await right.aclose()
    await wrong.aclose()


def test_the_jsonl_line_of_gemini_embedding_2() -> None:
    line = BatchLine(key="7-abc", text="refunds take five days", title="Billing")
    first = jsonl_line(line, SPACE)
    assert first == jsonl_line(line, SPACE)  # the same chunk, the same request
    assert orjson.loads(first) == {
        "key": "7-abc",
        "request": {
            "model": "models/gemini-embedding-2",
            "content": {"parts": [{"text": "title: Billing | text: refunds take five days"}]},
            "outputDimensionality": 768,
        },
    }
    assert orjson.loads(jsonl_line(line, EmbeddingSpace(dimensions=768)))["request"] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "refunds take five days"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
        "outputDimensionality": 768,
        "title": "Billing",
    }


async def test_batch_route_one_request_per_line_prefix_and_vectors(tmp_path: Path) -> None:
    emulator = GeminiEmulator()
    client = GeminiBatchClient(
        GoogleKeyring(KEY, batch_key=BATCH_KEY),
        space=SPACE,
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RETRY,
        temp_dir=tmp_path,
    )
    lines = [
        BatchLine(key=f"{i}-{i:012x}", text=f"note {i} about refunds", title="Billing")
        for i in range(5)
    ]
    job = await client.create_embedding_job(lines, display_name="asemantic-g2-1")
    assert job.input_file
    uploaded = [orjson.loads(raw) for raw in emulator.file_content(job.input_file).splitlines()]
    for line, sent in zip(lines, uploaded, strict=True):
        assert sent["key"] == line.key
        assert sent["request"]["content"] == {
            "parts": [{"text": f"title: Billing | text: {line.text}"}]
        }
        assert "taskType" not in sent["request"] and "title" not in sent["request"]
    emulator.complete_all()
    status = await client.get_job_status(job.name)
    assert status.output_file
    counts = ResultCounts()
    got: dict[str, bytes] = {}
    async for batch in client.retrieve_results(
        status.output_file, expected_keys={line.key for line in lines}, counts=counts
    ):
        got |= {result.key: result.vector for result in batch if result.vector is not None}
    assert set(got) == {line.key for line in lines}
    for line in lines:
        expected = _expected(emulator, f"title: Billing | text: {line.text}")
        assert _vector(got[line.key]) == pytest.approx(expected, abs=1e-6)
    await client.cleanup(job.name, files=[job.input_file, status.output_file])
    await client.aclose()
    assert not emulator.remote_leftovers()
