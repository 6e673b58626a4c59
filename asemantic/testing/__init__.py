"""Test helpers for asemantic and for applications built on it."""

from asemantic.testing.lexical import LexicalEmbedder, lexical_features, tokenize

__all__ = ["LexicalEmbedder", "lexical_features", "tokenize"]
