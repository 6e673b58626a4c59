"""The embedding space a database is built for."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DIMENSIONS", "DEFAULT_MODEL", "EmbeddingSpace", "MAX_INPUT_TOKENS"]

DEFAULT_MODEL = "gemini-embedding-001"
DEFAULT_DIMENSIONS = 768
MAX_INPUT_TOKENS = 2048
"""gemini-embedding-001 reads at most this many tokens per text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingSpace:
    """Model, dimensions and document task type: vectors from two spaces never mix."""

    model: str = DEFAULT_MODEL
    dimensions: int = DEFAULT_DIMENSIONS
    task_type: str = "RETRIEVAL_DOCUMENT"

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ValueError("model must be a non-empty string")
        if not 1 <= self.dimensions <= 8192:
            raise ValueError(f"dimensions must be within 1..8192, got {self.dimensions}")

    def describe(self) -> str:
        return f"{self.model}/{self.dimensions}d/{self.task_type}"
