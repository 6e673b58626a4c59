"""The embedding space a database is built for."""

from __future__ import annotations

from dataclasses import dataclass

from asemantic.domain.models import (
    DOCUMENT_TASKS,
    GEMINI_EMBEDDING_001,
    EmbeddingModel,
    embedding_model,
)

__all__ = ["DEFAULT_DIMENSIONS", "DEFAULT_MODEL", "EmbeddingSpace", "MAX_INPUT_TOKENS"]

DEFAULT_MODEL = "gemini-embedding-001"
DEFAULT_DIMENSIONS = 768
MAX_INPUT_TOKENS = GEMINI_EMBEDDING_001.max_input_tokens
"""gemini-embedding-001 reads at most this many tokens per text (the default model's
limit; a space's own is ``space.embedding_model.max_input_tokens``)."""


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
        if self.embedding_model.task_prefixes and self.task_type not in DOCUMENT_TASKS:
            raise ValueError(
                f"{self.model} takes the task as a text prefix; task_type must be one of "
                f"{sorted(DOCUMENT_TASKS)}, got {self.task_type!r}"
            )

    @property
    def embedding_model(self) -> EmbeddingModel:
        """What asemantic knows about the space's model (limits, request shape, prices:
        :func:`asemantic.domain.models.embedding_model`)."""
        return embedding_model(self.model)

    def describe(self) -> str:
        return f"{self.model}/{self.dimensions}d/{self.task_type}"
