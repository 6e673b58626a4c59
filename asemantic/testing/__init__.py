"""Test helpers for asemantic and for applications built on it."""

from asemantic.adapters.memory import MemoryStore
from asemantic.testing.backend import MemoryBatchBackend
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.lexical import LexicalEmbedder, lexical_features, tokenize

__all__ = [
    "GeminiEmulator",
    "LexicalEmbedder",
    "MemoryBatchBackend",
    "MemoryStore",
    "lexical_features",
    "tokenize",
]
