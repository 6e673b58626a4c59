"""What the emulated model does: check one embedding request and compute its vector.

Vectors are the deterministic lexical features of :func:`asemantic.testing.lexical_features`
(texts sharing words are close). Like Gemini, only 3,072-dimensional vectors come back
unit-length; smaller ones have a length between 0.3 and 0.9 that varies with the text,
so a caller that forgets to normalise ranks wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from asemantic.domain.tokens import approximate_tokens
from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.schemas import TASK_TYPES
from asemantic.testing.lexical import lexical_features

__all__ = [
    "DEFAULT_DIMENSIONS",
    "EmbedSpec",
    "MAX_DIMENSIONS",
    "MAX_TOKENS",
    "MIN_DIMENSIONS",
    "RequestProblem",
    "embedding_values",
    "model_name",
    "read_request",
]

DEFAULT_DIMENSIONS = 3072
MIN_DIMENSIONS = 128
MAX_DIMENSIONS = 3072
MAX_TOKENS = 2048


class RequestProblem(Exception):
    """An embedding request the model refuses (400 INVALID_ARGUMENT)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, kw_only=True)
class EmbedSpec:
    """A checked embedding request."""

    text: str
    dimensions: int
    task_type: str | None
    title: str | None
    tokens: int


def model_name(name: str) -> str:
    """``gemini-embedding-001`` -> ``models/gemini-embedding-001``."""
    return name if name.startswith(("models/", "tunedModels/")) else f"models/{name}"


def read_request(request: Mapping[str, Any], *, model: str, where: str) -> EmbedSpec:
    """Check an (already well-formed) ``EmbedContentRequest`` for ``model``.

    ``where`` names the request in messages (``BatchEmbedContentsRequest.requests[2]``).
    """
    requested = get(request, "model")
    if requested and model_name(str(requested)) != model:
        raise RequestProblem(
            f"* {where}.model: the request's model {model_name(str(requested))} "
            f"does not match {model}.\n"
        )
    text = _text(get(request, "content"), where)
    dimensions = _dimensions(get(request, "outputDimensionality"), where)
    task_type = _task_type(get(request, "taskType"))
    title = get(request, "title")
    tokens = approximate_tokens(text) + (approximate_tokens(title) if title else 0)
    if tokens > MAX_TOKENS:
        raise RequestProblem(
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({MAX_TOKENS})."
        )
    return EmbedSpec(
        text=text, dimensions=dimensions, task_type=task_type, title=title, tokens=tokens
    )


def embedding_values(spec: EmbedSpec) -> list[float]:
    """The vector the emulated model returns for ``spec``."""
    text = spec.text
    if spec.title and spec.task_type == "RETRIEVAL_DOCUMENT":
        text = f"{spec.title}\n{text}"
    features = lexical_features(text, spec.dimensions).astype(np.float64)
    length = float(np.linalg.norm(features))
    unit = features / length
    if spec.dimensions != MAX_DIMENSIONS:
        unit *= 0.3 + 0.6 * length / (length + 4.0)
    rounded: list[float] = np.round(unit, 8).tolist()
    return rounded


def _text(content: Any, where: str) -> str:
    parts = get(content, "parts") if isinstance(content, Mapping) else None
    if not parts:
        raise RequestProblem(f"* {where}.content: contents is not specified\n")
    texts: list[str] = []
    for index, part in enumerate(parts):
        text = get(part, "text")
        if text is None:
            raise RequestProblem(
                f"* {where}.content.parts[{index}]: only text parts are supported by this model\n"
            )
        texts.append(str(text))
    joined = "\n".join(texts)
    if not joined.strip():
        raise RequestProblem(f"* {where}.content.parts: the text must not be empty\n")
    return joined


def _dimensions(raw: Any, where: str) -> int:
    if raw is None:
        return DEFAULT_DIMENSIONS
    value = int(raw)
    if value == 0:
        return DEFAULT_DIMENSIONS
    if not MIN_DIMENSIONS <= value <= MAX_DIMENSIONS:
        raise RequestProblem(
            f"* {where}.output_dimensionality: must be between {MIN_DIMENSIONS} and "
            f"{MAX_DIMENSIONS}, got {value}\n"
        )
    return value


def _task_type(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int):
        return TASK_TYPES[raw]
    return str(raw)
