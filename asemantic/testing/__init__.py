"""Test helpers for asemantic and for applications built on it."""

from asemantic.testing.backend import MemoryBatchBackend
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.lexical import LexicalEmbedder, lexical_features, tokenize

__all__ = [
    "GeminiEmulator",
    "LexicalEmbedder",
    "MemoryBatchBackend",
    "lexical_features",
    "tokenize",
]
