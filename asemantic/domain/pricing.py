"""What embedding costs, online and through the Batch API.

List prices (USD per million input tokens) come from the model registry
(:mod:`asemantic.domain.models`): gemini-embedding-001 $0.15 online and $0.075 in batch,
gemini-embedding-2 $0.20 and $0.10 (the Batch API's 50% discount). Prices change and
differ per contract, so they are configuration (:class:`Pricing`, or
:meth:`Pricing.for_model` for a model's list prices), not constants buried in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from asemantic.domain.models import GEMINI_EMBEDDING_001, embedding_model

__all__ = ["CostReport", "Pricing", "cost_report"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pricing:
    """USD per million input tokens, per route (the defaults: gemini-embedding-001's)."""

    online_per_million: float = GEMINI_EMBEDDING_001.online_per_million
    batch_per_million: float = GEMINI_EMBEDDING_001.batch_per_million

    @classmethod
    def for_model(cls, model: str) -> Pricing:
        """The list prices of ``model`` (an unknown model: gemini-embedding-001's)."""
        known = embedding_model(model)
        return cls(
            online_per_million=known.online_per_million,
            batch_per_million=known.batch_per_million,
        )

    def __post_init__(self) -> None:
        if self.online_per_million < 0 or self.batch_per_million < 0:
            raise ValueError("prices must not be negative")

    def online(self, tokens: int) -> float:
        return tokens * self.online_per_million / 1_000_000

    def batch(self, tokens: int) -> float:
        return tokens * self.batch_per_million / 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class CostReport:
    """Tokens embedded per route, what they cost, and what the batch route saved.

    ``savings_usd`` is what the batch tokens would have cost online minus what they
    cost in batch. Query tokens are online tokens spent on search queries.
    """

    tokens_online: int
    tokens_batch: int
    tokens_query: int
    cost_online_usd: float
    cost_batch_usd: float
    cost_query_usd: float
    savings_usd: float
    savings_percent: float
    pricing: Pricing = field(default_factory=Pricing)

    @property
    def total_usd(self) -> float:
        return self.cost_online_usd + self.cost_batch_usd + self.cost_query_usd


def cost_report(tokens: Mapping[str, int], pricing: Pricing) -> CostReport:
    """A report from tokens per route (``online``, ``batch``, ``query``)."""
    online = int(tokens.get("online", 0))
    batch = int(tokens.get("batch", 0))
    query = int(tokens.get("query", 0))
    batch_at_online = pricing.online(batch)
    saved = batch_at_online - pricing.batch(batch)
    return CostReport(
        tokens_online=online,
        tokens_batch=batch,
        tokens_query=query,
        cost_online_usd=pricing.online(online),
        cost_batch_usd=pricing.batch(batch),
        cost_query_usd=pricing.online(query),
        savings_usd=saved,
        savings_percent=100.0 * saved / batch_at_online if batch_at_online else 0.0,
        pricing=pricing,
    )
