"""Small decisions with big consequences: which mode, what to retry, what to flush,
how long to wait.

Decisions:

* ``auto`` batches a document when a batch key is configured and the new text to embed
  is at least ``auto_batch_min_tokens`` (20,000 by default, about fifty pages): below
  that, saving half of a few cents is not worth waiting minutes to hours for search to
  see the document. The reason string says which rule decided.
* A failed line is retried only when the provider says the failure is transient
  (timeouts, rate limits, 5xx), whether the code is an HTTP status or a gRPC code (the
  batch result file carries ``google.rpc.Status`` objects). Anything else, including
  an error with neither code nor status, is permanent: retrying a bad request only
  spends money.
* :func:`plan_batches` keeps the order it is given and never exceeds either limit,
  except that a chunk larger than ``max_bytes`` on its own goes alone into a job of
  its own rather than raising: one odd chunk must not stall the whole queue, and the
  remote answer then fails that one chunk through the normal retry budget.
* :func:`poll_delay` is "full jitter" exponential backoff: uniform in
  ``[0, min(cap, base * 2**attempt)]``, which spreads many pollers out best.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from asemantic.domain.documents import EmbeddingStatus, IngestMode
from asemantic.errors import InvalidInputError, InvalidModeError

__all__ = [
    "DEFAULT_AUTO_BATCH_MIN_TOKENS",
    "ErrorClass",
    "RetryPolicy",
    "choose_mode",
    "classify_line_error",
    "next_chunk_status",
    "parse_mode",
    "plan_batches",
    "poll_delay",
    "should_flush",
]

DEFAULT_AUTO_BATCH_MIN_TOKENS = 20_000
"""``auto`` picks the Batch API from this many tokens to embed (with a batch key)."""

_RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_RETRYABLE_GRPC = frozenset({4, 8, 13, 14})  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...
_RETRYABLE_STATUS = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"}
)


def parse_mode(value: str | IngestMode) -> IngestMode:
    """An :class:`IngestMode` from its name (any case), or :class:`InvalidModeError`."""
    if isinstance(value, IngestMode):
        return value
    if isinstance(value, str):
        try:
            return IngestMode(value.strip().lower())
        except ValueError:
            pass
    valid = ", ".join(repr(mode.value) for mode in IngestMode)
    raise InvalidModeError(f"unknown ingestion mode {value!r}; valid modes are {valid}")


def choose_mode(
    requested: IngestMode,
    *,
    has_batch_key: bool,
    tokens: int,
    chunks: int,
    auto_batch_min_tokens: int = DEFAULT_AUTO_BATCH_MIN_TOKENS,
) -> tuple[IngestMode, str]:
    """The mode to use for ``chunks`` new chunks of ``tokens`` tokens, and why.

    ``sync`` and ``async`` pass through unchanged (the caller refuses ``async`` without
    a batch key); only ``auto`` is decided here, and never picks ``async`` without a key.
    """
    if tokens < 0 or chunks < 0 or auto_batch_min_tokens < 0:
        raise InvalidInputError("tokens, chunks and the threshold must not be negative")
    requested = parse_mode(requested)
    if requested is not IngestMode.AUTO:
        return requested, f"{requested.value} was requested"
    if chunks == 0:
        return IngestMode.SYNC, "auto chose sync: there is nothing new to embed"
    if not has_batch_key:
        return IngestMode.SYNC, "auto chose sync: no batch key is configured"
    if tokens < auto_batch_min_tokens:
        return IngestMode.SYNC, (
            f"auto chose sync: {tokens:,} tokens to embed is below the "
            f"{auto_batch_min_tokens:,}-token threshold for the Batch API"
        )
    return IngestMode.ASYNC, (
        f"auto chose async: {tokens:,} tokens to embed reaches the "
        f"{auto_batch_min_tokens:,}-token threshold and a batch key is configured "
        "(the Batch API costs half, but takes minutes to hours)"
    )


class ErrorClass(enum.StrEnum):
    """Whether trying a failed line again may succeed."""

    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many times a chunk is sent before it is marked FAILED."""

    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInputError("max_attempts must be at least 1")


def classify_line_error(code: int | None, status: str | None) -> ErrorClass:
    """Classify one failed result line by its error ``code`` and ``status`` name."""
    if code is not None and (code in _RETRYABLE_HTTP or code in _RETRYABLE_GRPC):
        return ErrorClass.RETRYABLE
    if status is not None and status.strip().upper() in _RETRYABLE_STATUS:
        return ErrorClass.RETRYABLE
    return ErrorClass.PERMANENT


def next_chunk_status(
    attempts_after: int, error_class: ErrorClass, policy: RetryPolicy
) -> EmbeddingStatus:
    """PENDING (try again) or FAILED, for a chunk that has now been sent this often."""
    if attempts_after < 0:
        raise InvalidInputError("attempts must not be negative")
    if error_class is ErrorClass.RETRYABLE and attempts_after < policy.max_attempts:
        return EmbeddingStatus.PENDING
    return EmbeddingStatus.FAILED


def plan_batches(
    chunks: Sequence[tuple[int, int]], *, max_size: int, max_bytes: int
) -> list[list[int]]:
    """Group ``(chunk_id, size_bytes)`` pairs, in order, into jobs within both limits."""
    if max_size < 1 or max_bytes < 1:
        raise InvalidInputError("max_size and max_bytes must be at least 1")
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for chunk_id, size in chunks:
        if size < 0:
            raise InvalidInputError(f"chunk {chunk_id} has a negative size")
        if current and (len(current) >= max_size or used + size > max_bytes):
            groups.append(current)
            current, used = [], 0
        current.append(chunk_id)
        used += size
    if current:
        groups.append(current)
    return groups


def should_flush(pending: int, *, min_size: int, force: bool) -> bool:
    """Whether ``pending`` chunks justify a new batch job now."""
    if pending <= 0:
        return False
    return force or pending >= min_size


def poll_delay(base: float, attempt: int, *, rng: random.Random, cap: float) -> float:
    """Seconds to wait before poll number ``attempt`` (from 0), with full jitter."""
    if base <= 0 or cap <= 0 or attempt < 0:
        raise InvalidInputError("base and cap must be positive and attempt not negative")
    ceiling = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return rng.uniform(0.0, ceiling)
