"""Documents, chunks and the values that describe them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from asemantic.domain.keywords import index_terms

__all__ = [
    "ChunkDraft",
    "Document",
    "EmbeddingStatus",
    "IngestMode",
    "IngestResult",
    "JSONValue",
    "SearchHit",
]

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None


class EmbeddingStatus(enum.StrEnum):
    """Where a chunk's vector stands."""

    READY = "READY"
    PENDING = "PENDING"
    FAILED = "FAILED"


class IngestMode(enum.StrEnum):
    """How :meth:`SemanticCore.ingest` embeds new chunks.

    ``SYNC`` embeds at once through the online API. ``ASYNC`` stores the chunks as
    PENDING for the batch pipeline (half price, minutes to hours). ``AUTO`` picks one:
    see :func:`asemantic.domain.policy.choose_mode`.
    """

    SYNC = "sync"
    ASYNC = "async"
    AUTO = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A document to ingest.

    ``source`` identifies the document across ingestions (a path, a URL, your own id):
    ingesting the same source again replaces the old version, and costs nothing when the
    text is unchanged. ``metadata`` is any JSON object; search can filter on its keys.
    """

    text: str
    source: str
    title: str | None = None
    metadata: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkDraft:
    """A chunk cut from a document, before it is stored.

    ``vector_source`` is the exact text sent for embedding (title, heading path and the
    chunk); ``content_hash`` is the hash of that text, which identifies the vector.
    ``keyword_terms`` is what keyword search indexes the chunk by: its
    :func:`~asemantic.domain.keywords.index_terms`, worked out
    with the draft (so a worker process splitting documents does it too); None, and
    the store works it out from ``text``. It must be exactly that, or nothing.
    """

    position: int
    text: str
    heading_path: tuple[str, ...]
    vector_source: str
    content_hash: str
    token_estimate: int
    keyword_terms: str | None = None

    def index_terms(self) -> str:
        """``keyword_terms``, worked out from ``text`` if the draft has none."""
        if self.keyword_terms is not None:
            return self.keyword_terms
        return index_terms(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What one ingestion did."""

    document_id: int
    chunks_stored: int
    chunks_unchanged: int
    chunks_removed: int
    mode: IngestMode
    mode_reason: str
    chunks_pending: int = 0
    tokens_embedded: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    """One search result.

    ``distance`` is the cosine distance to the query (0 is identical), None when the
    vector search did not rank the chunk (a keyword-only hit, maybe a chunk whose
    vector is not there yet: see ``embedding_status``). ``score`` is what the mode
    ranked by, higher is better: ``1 - distance`` (vector), the BM25 score
    (keyword), the fused RRF score (hybrid). ``vector_rank`` and ``keyword_rank``
    are the chunk's 1-based rank in each list that found it (None: not found by
    that list); ``keyword_score`` its BM25 score when the keyword list found it.
    """

    chunk_id: int
    document_id: int
    source: str
    title: str | None
    text: str
    position: int
    heading_path: tuple[str, ...]
    distance: float | None
    document_metadata: Mapping[str, JSONValue] = field(default_factory=dict)
    score: float = 0.0
    embedding_status: EmbeddingStatus = EmbeddingStatus.READY
    vector_rank: int | None = None
    keyword_rank: int | None = None
    keyword_score: float | None = None

    @property
    def found_by(self) -> tuple[str, ...]:
        """The lists that found the chunk: ``"vector"``, ``"keyword"`` or both."""
        found = []
        if self.vector_rank is not None:
            found.append("vector")
        if self.keyword_rank is not None:
            found.append("keyword")
        return tuple(found)
