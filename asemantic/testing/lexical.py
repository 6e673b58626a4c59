"""Deterministic lexical embeddings: hashed word features.

Texts that share words get close vectors, so a search over them ranks documents that
share the query's words first. The Gemini emulator uses the same features, which makes
offline demos and tests give sensible rankings.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from asemantic.adapters.vectors import FloatArray, normalise
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import EmbedRequest

__all__ = ["LexicalEmbedder", "lexical_features", "tokenize"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORD_TEXT = (
    "a an and are as at be but by for from has have if in into is it its of on or that the "
    "their there these this to was were will with we you your our they them he she his her "
    "not no do does did so than then what which who how when where why can could would should "
    "i me my us all any each about over under more most also been being"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_BIAS_TOKEN = "\x00bias"  # noqa: S105 - a feature name, not a secret


def tokenize(text: str) -> list[str]:
    """Lower-cased words with stop words dropped and a light suffix strip."""
    tokens: list[str] = []
    for word in _WORD.findall(text.casefold()):
        if word in _STOPWORDS:
            continue
        for suffix in ("ing", "es", "ed", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        tokens.append(word)
    return tokens


def _slot(token: str, dimensions: int) -> tuple[int, float]:
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimensions, (1.0 if (value >> 63) & 1 else -1.0)


def lexical_features(text: str, dimensions: int) -> FloatArray:
    """Raw (not normalised) hashed features of ``text``; never the zero vector."""
    vector = np.zeros(dimensions, dtype=np.float32)
    counts = Counter(tokenize(text))
    for token, count in counts.items():
        index, sign = _slot(token, dimensions)
        vector[index] += sign * (1.0 + math.log(count))
    # A small constant feature keeps texts without words (punctuation, digits only
    # are words too) away from the zero vector, which has no direction.
    index, sign = _slot(_BIAS_TOKEN, dimensions)
    vector[index] += sign * 0.05
    return vector


class LexicalEmbedder:
    """An :class:`~asemantic.ports.Embedder` for tests and offline use.

    It needs no key and no network and returns normalised lexical vectors. It also
    counts its calls (``calls``) and texts (``texts_embedded``) so tests can assert that
    unchanged documents cost nothing.
    """

    def __init__(self, space: EmbeddingSpace | None = None) -> None:
        self._space = space or EmbeddingSpace(model="lexical-hash-v1")
        self.calls = 0
        self.texts_embedded = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"LexicalEmbedder(space={self._space.describe()!r})"

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    def vector(self, text: str) -> bytes:
        return normalise(lexical_features(text, self._space.dimensions)).tobytes()

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        self.calls += 1
        self.texts_embedded += len(requests)
        return [self.vector(request.text) for request in requests]

    async def embed_query(self, text: str) -> bytes:
        self.calls += 1
        return self.vector(text)

    async def aclose(self) -> None:
        self.closed = True
