"""What the emulated model does: check one embedding request and compute its vector.

Vectors are the deterministic lexical features of :func:`asemantic.testing.lexical_features`
(texts sharing words are close). Like Gemini, only 3,072-dimensional vectors come back
unit-length; smaller ones have a length between 0.3 and 0.9 that varies with the text,
so a caller that forgets to normalise ranks wrongly.

Decisions:

* **Fast and identical.** :func:`fast_tokens` and :func:`features` give exactly what
  :func:`asemantic.domain.tokens.approximate_tokens` and
  :func:`asemantic.testing.lexical_features` give (tests pin this), with the per-word
  work (stop words, suffixes, hashing) cached: a corpus repeats its words, so a job of
  tens of thousands of lines costs a fraction of a second per thousand.
* **Dense vectors** (``dense=True``): Google's values are dense full-precision floats,
  about 10 KB a line at 768 dimensions, where the lexical features are mostly zeros
  (about 4 KB a line). The dense variant adds deterministic noise (seeded by the text,
  about a tenth of the vector's length, so rankings by shared words hold) and keeps
  ten decimals.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.schemas import TASK_TYPES
from asemantic.testing.lexical import _BIAS_TOKEN, _STOPWORDS, _WORD, _slot

__all__ = [
    "DEFAULT_DIMENSIONS",
    "EmbedSpec",
    "MAX_DIMENSIONS",
    "MAX_TOKENS",
    "MIN_DIMENSIONS",
    "RequestProblem",
    "embedding_array",
    "embedding_values",
    "fast_tokens",
    "features",
    "item_tokens",
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
    tokens = fast_tokens(text) + (fast_tokens(title) if title else 0)
    if tokens > MAX_TOKENS:
        raise RequestProblem(
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({MAX_TOKENS})."
        )
    return EmbedSpec(
        text=text, dimensions=dimensions, task_type=task_type, title=title, tokens=tokens
    )


def embedding_values(spec: EmbedSpec, *, dense: bool = False) -> list[float]:
    """The vector the emulated model returns for ``spec``."""
    values: list[float] = embedding_array(spec, dense=dense).tolist()
    return values


def embedding_array(spec: EmbedSpec, *, dense: bool = False) -> NDArray[np.float64]:
    """:func:`embedding_values` as a float64 array (rounded as the wire shows it)."""
    text = spec.text
    if spec.title and spec.task_type == "RETRIEVAL_DOCUMENT":
        text = f"{spec.title}\n{text}"
    vector = features(text, spec.dimensions).astype(np.float64)
    if dense:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        noise = np.random.default_rng(seed).standard_normal(spec.dimensions)
        vector = vector + noise * (0.1 * float(np.linalg.norm(vector)) / math.sqrt(spec.dimensions))
    length = float(np.linalg.norm(vector))
    unit = vector / length
    if spec.dimensions != MAX_DIMENSIONS:
        unit *= 0.3 + 0.6 * length / (length + 4.0)
    return np.round(unit, 10 if dense else 8)


def item_tokens(item: Any, model: str) -> int:
    """The tokens of one batch request (0 when the model would refuse it)."""
    try:
        return read_request(item.request, model=model, where="EmbedContentRequest").tokens
    except (RequestProblem, TypeError, ValueError):
        return 0


_ALNUM = re.compile(r"[A-Za-z0-9]+", re.ASCII)
_SYMBOL = re.compile(r"[!-/:-@\[-`{-~]", re.ASCII)


def fast_tokens(text: str) -> int:
    """Exactly :func:`asemantic.domain.tokens.approximate_tokens`, faster: ASCII words
    count a token per 4 letters, ASCII symbols and non-space non-ASCII characters one."""
    total = sum((len(word) + 3) >> 2 for word in _ALNUM.findall(text))
    total += len(_SYMBOL.findall(text))
    if not text.isascii():
        total += sum(1 for char in text if char > "\x7f" and not char.isspace())
    return total


@functools.lru_cache(maxsize=65536)
def _term(word: str) -> str | None:
    if word in _STOPWORDS:
        return None
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=131072)
def _cached_slot(token: str, dimensions: int) -> tuple[int, float]:
    return _slot(token, dimensions)


def features(text: str, dimensions: int) -> NDArray[np.float32]:
    """Exactly :func:`asemantic.testing.lexical_features` (float32), with cached words."""
    vector = np.zeros(dimensions, dtype=np.float32)
    counts = Counter(term for word in _WORD.findall(text.casefold()) if (term := _term(word)))
    for token, count in counts.items():
        index, sign = _cached_slot(token, dimensions)
        vector[index] += sign * (1.0 + math.log(count))
    index, sign = _cached_slot(_BIAS_TOKEN, dimensions)
    vector[index] += sign * 0.05
    return vector


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
