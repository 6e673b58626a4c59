"""Test helpers for asemantic and for applications built on it."""

from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.lexical import LexicalEmbedder, lexical_features, tokenize

__all__ = ["GeminiEmulator", "LexicalEmbedder", "lexical_features", "tokenize"]
