"""Retry settings for calls to Gemini (no SDK import: :mod:`asemantic.config` uses it)."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """Retries for idempotent calls: exponential backoff with full jitter.

    ``attempts`` counts the first call. A ``Retry-After`` header, when the provider
    sends one, sets a floor for the next delay (capped by ``max_delay``).
    """

    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.timeout <= 0:
            raise ValueError("delays must be >= 0 and the timeout > 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        ceiling = min(self.max_delay, self.initial_delay * (2 ** (attempt - 1)))
        delay = rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay
