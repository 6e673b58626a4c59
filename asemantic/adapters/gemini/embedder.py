"""The online embedder: ``client.aio.models.embed_content`` with the default key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx2
from google.genai import types

from asemantic.adapters.gemini.client import (
    ClientHandle,
    LazyClient,
    call_with_retries,
)
from asemantic.adapters.vectors import normalise
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import AsemanticError, ProviderError
from asemantic.keys import GoogleKeyring
from asemantic.ports import EmbedRequest

__all__ = ["GeminiEmbedder", "MAX_TEXTS_PER_CALL"]

logger = logging.getLogger(__name__)

MAX_TEXTS_PER_CALL = 100
"""Google rejects more than 100 texts in one ``batchEmbedContents`` call."""


class GeminiEmbedder:
    """Embeds texts now, through the online API, with the keyring's *default* key.

    Chunks are embedded with the space's task type (``RETRIEVAL_DOCUMENT``, with the
    document's title), queries as ``RETRIEVAL_QUERY``: as request fields for
    gemini-embedding-001, as a text prefix for gemini-embedding-2 (which ignores the
    fields; see :mod:`asemantic.domain.models`). Every text is its own request (its own
    content) inside a ``batchEmbedContents`` call. Calls carry at most 100 texts, run at
    most ``max_concurrency`` at a time, each with a timeout, and are retried on
    408/429/5xx and timeouts with exponential backoff and jitter (honouring
    ``Retry-After``). Vectors come back L2-normalised (gemini-embedding-001 normalises
    only at 3,072 dimensions).
    """

    def __init__(
        self,
        keys: GoogleKeyring,
        *,
        space: EmbeddingSpace | None = None,
        base_url: str | None = None,
        retry: RetryConfig | None = None,
        max_concurrency: int = 4,
        transport: httpx2.AsyncBaseTransport | None = None,
        http_client: Any = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._keys = keys
        self._space = space or EmbeddingSpace()
        self._retry = retry or RetryConfig()
        self._lazy = LazyClient(
            keys.default,
            base_url=base_url,
            timeout=self._retry.timeout,
            transport=transport,
            http_client=http_client,
            what="embedder",
        )
        self._limit = asyncio.Semaphore(max_concurrency)

    def __repr__(self) -> str:
        return f"GeminiEmbedder(space={self._space.describe()!r})"

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    def _client(self) -> ClientHandle:
        return self._lazy.get()

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        # One call shares one config: group the texts by the fields it carries (the
        # title, for a model that takes it as a field; nothing, for one that takes the
        # task in the text), keep order.
        model = self._space.embedding_model
        inputs = [
            model.document_input(request.text, title=request.title, task_type=self._space.task_type)
            for request in requests
        ]
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for index, shaped in enumerate(inputs):
            groups.setdefault((shaped.task_type, shaped.title), []).append(index)
        calls: list[tuple[tuple[str | None, str | None], list[int]]] = []
        for fields, indexes in groups.items():
            for start in range(0, len(indexes), MAX_TEXTS_PER_CALL):
                calls.append((fields, indexes[start : start + MAX_TEXTS_PER_CALL]))
        results: list[bytes | None] = [None] * len(requests)

        async def run(fields: tuple[str | None, str | None], indexes: list[int]) -> None:
            texts = [inputs[i].text for i in indexes]
            vectors = await self._embed(texts, task_type=fields[0], title=fields[1])
            for i, vector in zip(indexes, vectors, strict=True):
                results[i] = vector

        try:
            async with asyncio.TaskGroup() as group:
                for fields, indexes in calls:
                    group.create_task(run(fields, indexes))
        except* AsemanticError as errors:
            # One call failed (the others were cancelled): raise it as itself, so
            # ``except AuthenticationError`` works for callers.
            raise errors.exceptions[0] from None
        return [vector for vector in results if vector is not None]

    async def embed_query(self, text: str) -> bytes:
        shaped = self._space.embedding_model.query_input(text)
        (vector,) = await self._embed([shaped.text], task_type=shaped.task_type, title=None)
        return vector

    async def _embed(
        self, texts: list[str], *, task_type: str | None, title: str | None
    ) -> list[bytes]:
        handle = self._client()
        config = types.EmbedContentConfig(
            task_type=task_type,
            title=title,
            output_dimensionality=self._space.dimensions,
        )
        # One Content per text, so one request (and one vector) per text: a plain list
        # of strings would be merged into one multi-part Content by gemini-embedding-2
        # (the SDK's t_contents), and the model returns one vector for all the parts.
        contents: list[types.ContentUnion] = [
            types.Content(parts=[types.Part(text=text)], role="user") for text in texts
        ]

        async def call() -> types.EmbedContentResponse:
            return await handle.client.aio.models.embed_content(
                model=self._space.model, contents=contents, config=config
            )

        async with self._limit:
            response = await call_with_retries(
                call, what="embed_content", retry=self._retry, secrets=[self._keys.default]
            )
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise ProviderError(
                f"embed_content returned {len(embeddings)} vectors for {len(texts)} texts"
            )
        vectors: list[bytes] = []
        for embedding in embeddings:
            values = embedding.values or []
            if len(values) != self._space.dimensions:
                raise ProviderError(
                    f"embed_content returned {len(values)} dimensions, "
                    f"expected {self._space.dimensions}"
                )
            vectors.append(normalise(values).tobytes())
        return vectors

    async def aclose(self) -> None:
        await self._lazy.aclose()
