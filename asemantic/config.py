"""Settings of a :class:`~asemantic.SemanticCore`, as one frozen value.

Decisions: the settings import no adapter and no HTTP library (the retry settings come
from :mod:`asemantic.domain.policy`), so ``transport`` and ``http_client`` are typed
``Any`` here and typed precisely where they are used, in the Gemini adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asemantic.domain.fusion import Fusion
from asemantic.domain.policy import RetryConfig
from asemantic.domain.pricing import Pricing
from asemantic.domain.space import EmbeddingSpace

__all__ = ["CoreConfig", "GeminiSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiSettings:
    """How to reach Gemini.

    ``base_url`` points the SDK elsewhere (an emulator, a proxy); ``transport`` injects an
    ``httpx2`` transport, an ``httpx2.AsyncBaseTransport`` (the in-process emulator, or a
    mock in unit tests); ``http_client`` injects an ``httpx.AsyncClient``/
    ``httpx2.AsyncClient`` you own (proxies, custom TLS, ``respx``). ``retry`` sets
    retries and the per-call timeout.
    """

    base_url: str | None = None
    transport: Any = None
    http_client: Any = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    max_concurrency: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreConfig:
    """Ingestion and search settings.

    ``target_tokens``/``max_tokens`` drive the splitter (estimated tokens per chunk);
    ``auto_batch_min_tokens`` is the size from which ``mode="auto"`` sends a document
    through the Batch API (when a batch key is configured). ``pricing`` sets the list
    prices :meth:`SemanticCore.stats` uses; ``create_grace_seconds`` is how long the
    batch manager waits after a batch create of unknown outcome (a timeout, a 5xx)
    before it may send another for the same job, rather than risk a duplicate.
    ``fusion`` holds the weights, constant and candidate depth of hybrid search's
    reciprocal rank fusion (:class:`asemantic.domain.fusion.Fusion`; a call to
    :meth:`SemanticCore.search` may pass its own). ``memory_index`` searches an exact
    in-memory copy of the vectors (see :meth:`asemantic.adapters.sqlite.SqliteStore.open`);
    off, vec0. How many batch jobs
    are polled at a time is the supervisor's setting
    (:attr:`SupervisorConfig.max_concurrent_jobs`), and an argument of
    :meth:`BatchManager.sync_status` for a pass run by hand.
    """

    space: EmbeddingSpace = field(default_factory=EmbeddingSpace)
    target_tokens: int = 400
    max_tokens: int = 1500
    auto_batch_min_tokens: int = 20_000
    max_search_k: int = 1000
    busy_timeout_ms: int = 5000
    create_grace_seconds: float = 120.0
    pricing: Pricing = field(default_factory=Pricing)
    memory_index: bool = True
    fusion: Fusion = field(default_factory=Fusion)

    def __post_init__(self) -> None:
        if not 1 <= self.target_tokens <= self.max_tokens:
            raise ValueError("target_tokens must be within 1..max_tokens")
        if self.max_search_k < 1:
            raise ValueError("max_search_k must be at least 1")
