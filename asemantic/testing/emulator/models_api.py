"""Synchronous embedding routes: ``batchEmbedContents`` and ``embedContent``."""

from __future__ import annotations

from typing import Any

from asemantic.testing.emulator.context import Call
from asemantic.testing.emulator.embedding import (
    RequestProblem,
    embedding_values,
    model_name,
    read_request,
)
from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.rpc import ApiError, bad_request
from asemantic.testing.emulator.schemas import BATCH_EMBED_REQUEST, EMBED_CONTENT_REQUEST
from asemantic.testing.emulator.wire import EmulatorResponse

__all__ = ["MAX_SYNC_REQUESTS", "batch_embed_contents", "embed_content", "require_model"]

#: Google rejects more texts than this in one ``batchEmbedContents`` call.
MAX_SYNC_REQUESTS = 100


def require_model(call: Call, method: str) -> str:
    """The route's model as ``models/...``; 404 NOT_FOUND when the emulator lacks it."""
    model = model_name(call.params["model"])
    if model not in call.config.models:
        raise ApiError(
            404,
            f"{model} is not found for API version v1beta, or is not supported for "
            f"{method}. Call ListModels to see the list of available models and their "
            "supported methods.",
        )
    return model


def batch_embed_contents(call: Call) -> EmulatorResponse:
    """``POST /v1beta/models/{model}:batchEmbedContents``."""
    model = require_model(call, "batchEmbedContents")
    requests: list[Any] = get(call.json_body(BATCH_EMBED_REQUEST), "requests") or []
    if not requests:
        raise bad_request(["* BatchEmbedContentsRequest.requests: contents is not specified\n"])
    if len(requests) > MAX_SYNC_REQUESTS:
        raise bad_request(
            ["* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"]
        )
    embeddings = []
    for index, request in enumerate(requests):
        where = f"BatchEmbedContentsRequest.requests[{index}]"
        embeddings.append({"values": _values(request, model, where)})
    return EmulatorResponse.of_json(200, {"embeddings": embeddings})


def embed_content(call: Call) -> EmulatorResponse:
    """``POST /v1beta/models/{model}:embedContent``."""
    model = require_model(call, "embedContent")
    request = call.json_body(EMBED_CONTENT_REQUEST)
    values = _values(request, model, "EmbedContentRequest")
    return EmulatorResponse.of_json(200, {"embedding": {"values": values}})


def _values(request: Any, model: str, where: str) -> list[float]:
    try:
        spec = read_request(request, model=model, where=where)
    except RequestProblem as problem:
        raise ApiError(problem.code, problem.message) from None
    return embedding_values(spec)
