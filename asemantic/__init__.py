"""asemantic: semantic search over your own documents with Gemini embeddings.

Documents go in, are split into chunks, embedded (now, or later and at half price
through the Gemini Batch API) and kept with their vectors in one SQLite file::

    async with SemanticCore.open("kb.db", keys=GoogleKeyring(key, batch_key=bkey)) as core:
        await core.ingest_file("notes.md", mode="async")
        async with BatchSupervisor(core):
            ...
        hits = await core.search("what did we decide?")
"""

from typing import TYPE_CHECKING, Any

from asemantic.adapters.sqlite.schema import ensure_schema_compatibility
from asemantic.adapters.sqlite.store import SqliteStore
from asemantic.batch.manager import BatchManager, SyncReport
from asemantic.batch.supervisor import BatchSupervisor, SupervisorConfig, SupervisorHealth
from asemantic.config import CoreConfig, GeminiSettings
from asemantic.copy import CopyReport, copy_knowledge_base
from asemantic.core import CoreStats, SemanticCore
from asemantic.domain.documents import (
    Document,
    EmbeddingStatus,
    IngestMode,
    IngestResult,
    SearchHit,
)
from asemantic.domain.events import TransitionEvent
from asemantic.domain.fusion import Fusion, SearchMode, is_identifier_query
from asemantic.domain.jobs import JobStatus
from asemantic.domain.policy import RetryConfig, RetryPolicy
from asemantic.domain.pricing import CostReport, Pricing
from asemantic.domain.space import EmbeddingSpace
from asemantic.errors import (
    AsemanticError,
    AuthenticationError,
    BatchError,
    ChunkTooLargeError,
    EmbeddingSpaceMismatchError,
    EmptyDocumentError,
    ExtensionLoadingUnavailableError,
    InputFileError,
    InvalidInputError,
    InvalidModeError,
    InvalidTransitionError,
    InvalidVectorError,
    KnowledgeBaseMismatchError,
    MissingBatchKeyError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    SchemaVersionError,
    SpaceSwitchedError,
    StoreAuthenticationError,
    StoreBusyError,
    StoreClosedError,
    StoreConnectionError,
    StoreError,
    SupervisorLeaseError,
    TransferError,
    TransferVerificationError,
    UndecodableTextError,
    VectorExtensionMissingError,
)
from asemantic.keys import GoogleKeyring
from asemantic.ports import SearchFilters

if TYPE_CHECKING:
    from asemantic.adapters.gemini.batch import GeminiBatchClient
    from asemantic.adapters.gemini.embedder import GeminiEmbedder

__all__ = [
    "AsemanticError",
    "AuthenticationError",
    "BatchError",
    "BatchManager",
    "BatchSupervisor",
    "ChunkTooLargeError",
    "CopyReport",
    "CoreConfig",
    "CoreStats",
    "CostReport",
    "Document",
    "EmbeddingSpace",
    "EmbeddingSpaceMismatchError",
    "EmbeddingStatus",
    "EmptyDocumentError",
    "ExtensionLoadingUnavailableError",
    "Fusion",
    "GeminiBatchClient",
    "GeminiEmbedder",
    "GeminiSettings",
    "GoogleKeyring",
    "IngestMode",
    "IngestResult",
    "InputFileError",
    "InvalidInputError",
    "InvalidModeError",
    "InvalidTransitionError",
    "InvalidVectorError",
    "JobStatus",
    "KnowledgeBaseMismatchError",
    "MissingBatchKeyError",
    "Pricing",
    "ProviderError",
    "ProviderRequestError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RetryConfig",
    "RetryPolicy",
    "SchemaVersionError",
    "SearchFilters",
    "SearchHit",
    "SearchMode",
    "SemanticCore",
    "SpaceSwitchedError",
    "SqliteStore",
    "StoreAuthenticationError",
    "StoreBusyError",
    "StoreClosedError",
    "StoreConnectionError",
    "StoreError",
    "SupervisorConfig",
    "SupervisorHealth",
    "SupervisorLeaseError",
    "SyncReport",
    "TransferError",
    "TransferVerificationError",
    "TransitionEvent",
    "UndecodableTextError",
    "VectorExtensionMissingError",
    "copy_knowledge_base",
    "ensure_schema_compatibility",
    "is_identifier_query",
]
__version__ = "0.1.0"


# The Gemini adapters import google-genai (about a second): loaded on first access.
_LAZY = {
    "GeminiBatchClient": "asemantic.adapters.gemini.batch",
    "GeminiEmbedder": "asemantic.adapters.gemini.embedder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'asemantic' has no attribute {name!r}")
