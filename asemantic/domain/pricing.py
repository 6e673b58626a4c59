"""What embedding costs, online and through the Batch API.

List prices for gemini-embedding-001 (USD per million input tokens): $0.15 online and
$0.075 in batch, the Batch API's 50% discount. Prices change and differ per model and
contract, so they are configuration (:class:`Pricing`), not constants buried in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CostReport", "Pricing", "cost_report"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pricing:
    """USD per million input tokens, per route."""

    online_per_million: float = 0.15
    batch_per_million: float = 0.075

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
