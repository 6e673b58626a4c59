"""Past a deadline, chunks still pending are embedded online, within a cost budget.

A supervisor given ``deadline=`` (an aware datetime) runs an :class:`OnlineFallback` at
the end of each tick once that moment has passed: the chunks still PENDING (queued, or
in a job that has not delivered) are embedded with the core's online embedder, at the
online price, until none is left or the budget (``deadline_budget_usd``, priced with
the core's :class:`~asemantic.domain.pricing.Pricing`) is spent.

Decisions:

* **The cost report shows who paid.** Vectors embedded here are recorded in the usage
  ledger under the ``online`` route (``core.stats().cost`` shows them beside the
  ``batch`` tokens). Their batch results, if a job still delivers them, are discarded
  as stale (the chunk is READY already) and not recorded again; the provider still
  charges for a batch job it finishes, so a remote job whose chunks were all embedded
  here is cancelled by the next pass that finds it empty (:mod:`asemantic.batch.stuck`
  retires it).
* **The budget is per supervisor run** and checked before each slice: a slice is cut
  to what the budget still pays for (by the token estimate of
  :func:`~asemantic.domain.tokens.approximate_tokens`), so the spend never exceeds it.
  Once spent, the fallback says so once in the log and the batch route carries on.
* **Bounded per tick**: at most :data:`MAX_SLICES` slices of :data:`SLICE` chunks a
  tick, so a tick stays short; the next tick goes on.
* Vectors are written through ``Store.bulk_update_vectors``: a chunk deleted or
  replaced by a new ingestion meanwhile is skipped by the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from asemantic.domain.pricing import Pricing
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import InvalidInputError
from asemantic.ports import Embedder, EmbedRequest, JobStore, Store

__all__ = ["FallbackSpend", "HasOnline", "MAX_SLICES", "OnlineFallback", "SLICE"]

logger = logging.getLogger("asemantic.batch.supervisor")

SLICE = 100
"""Chunks embedded online per call (the online API takes up to 100 texts a call)."""
MAX_SLICES = 10
"""Slices one tick embeds at most."""


class HasOnline(Protocol):
    """What the fallback needs of a :class:`~asemantic.SemanticCore`."""

    @property
    def embedder(self) -> Embedder: ...

    @property
    def store(self) -> Store: ...

    @property
    def pricing(self) -> Pricing: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackSpend:
    """What the fallback embedded online in this supervisor run, and what it cost."""

    texts: int = 0
    tokens: int = 0
    usd: float = 0.0
    budget_spent: bool = False


class OnlineFallback:
    """Embeds pending chunks online once ``deadline`` has passed (see the module doc)."""

    def __init__(self, core: HasOnline, *, deadline: datetime, budget_usd: float) -> None:
        if deadline.tzinfo is None:
            raise InvalidInputError("deadline must be an aware datetime (with a time zone)")
        if budget_usd < 0:
            raise InvalidInputError("deadline_budget_usd must not be negative")
        self._core = core
        self._deadline = deadline
        self._budget = budget_usd
        self.spend = FallbackSpend()

    def __repr__(self) -> str:
        return f"OnlineFallback(deadline={self._deadline.isoformat()}, spend={self.spend})"

    def due(self, now: datetime) -> bool:
        return now >= self._deadline and not self.spend.budget_spent

    async def run(self, jobs: JobStore, now: datetime) -> int:
        """Embed pending chunks online if the deadline passed; how many got a vector."""
        written = 0
        for _ in range(MAX_SLICES):
            if not self.due(now):
                break
            done = await self._slice(jobs)
            written += done
            if done == 0:
                break
        return written

    async def _slice(self, jobs: JobStore) -> int:
        chunks = await jobs.pending_chunks(limit=SLICE)
        if not chunks:
            return 0
        pricing = self._core.pricing
        chosen = []
        tokens = 0
        for chunk in chunks:
            cost = max(1, approximate_tokens(chunk.text))
            if self.spend.usd + pricing.online(tokens + cost) > self._budget:
                break
            chosen.append(chunk)
            tokens += cost
        if not chosen:
            logger.warning("the deadline's online budget is spent; pending chunks stay on batch")
            self.spend = FallbackSpend(
                texts=self.spend.texts,
                tokens=self.spend.tokens,
                usd=self.spend.usd,
                budget_spent=True,
            )
            return 0
        requests = [EmbedRequest(text=chunk.text, title=chunk.title) for chunk in chosen]
        blobs = await self._core.embedder.embed_documents(requests)
        store = self._core.store
        written = await store.bulk_update_vectors(
            {chunk.chunk_id: blob for chunk, blob in zip(chosen, blobs, strict=True)}
        )
        await store.record_usage("online", texts=len(chosen), tokens=tokens)
        self.spend = FallbackSpend(
            texts=self.spend.texts + len(chosen),
            tokens=self.spend.tokens + tokens,
            usd=self.spend.usd + pricing.online(tokens),
            budget_spent=False,
        )
        logger.info(
            "past the deadline: chunks embedded online", extra={"chunks": written, "tokens": tokens}
        )
        return written
