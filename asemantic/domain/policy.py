"""Small decisions with big consequences: which mode, what to retry, what to flush,
how long to wait, what to hide, and who may use the Batch API.

This is the one home of asemantic's policy: the Gemini adapters, the batch manager, the
supervisor and the CLI all ask it rather than deciding on their own.

Decisions:

* ``auto`` batches a document when a batch key is configured and the new text to embed
  is at least ``auto_batch_min_tokens`` (20,000 by default, about fifty pages): below
  that, saving half of a few cents is not worth waiting minutes to hours for search to
  see the document. The reason string says which rule decided.
* **What is worth trying again** is one set of HTTP statuses,
  :data:`RETRYABLE_HTTP_STATUSES` (408, 429 and the 5xx that mean "not now"): the Gemini
  client retries a call on them, and a failed batch line is retried on them or on the
  matching gRPC codes and status names (the batch result file carries
  ``google.rpc.Status`` objects). Anything else, including an error with neither code
  nor status, is permanent: retrying a bad request only spends money.
* **A 4xx other than 408 means the provider refused before acting**
  (:func:`refused_before_acting`): after a failed batch create, only such an answer
  proves no remote job exists. A 408, a 5xx, a timeout or no answer at all leaves the
  outcome unknown.
* **An error is transient** (:func:`is_transient`) when it is a
  :class:`~asemantic.errors.ProviderError` that waiting may cure (a rate limit, a 5xx, a
  timeout); a rejected key and a request the provider refuses are not, nor is any other
  error.
* **Backoff doubles from an initial delay up to a cap** (:func:`backoff_delay`, counting
  attempts or failures from 1). Remote calls spread it with *full jitter*
  (:func:`full_jitter`: uniform in ``[0, delay]``, which spreads many clients out best)
  and never wait less than a ``Retry-After`` the provider sent (capped too); the
  supervisor's ticks spread theirs by a fraction around the delay
  (:func:`jittered_delay`), so that a tick never comes much sooner than planned.
* **Secrets are scrubbed by plain replacement** (:func:`scrub`): every occurrence of each
  non-empty secret becomes ``***``, the longest secret first so that a key that contains
  another is not left half shown.
* **Batch work needs a batch key** (:func:`require_batch_key`): without one, the
  documented ``ValueError`` (:class:`~asemantic.errors.MissingBatchKeyError`) is raised
  before anything is written.
* **A refused create waits as long as the provider asks** (:func:`create_retry_delay`):
  a ``RetryInfo`` delay is honoured (plus up to 10% so that several databases of one
  project do not come back at the same instant), else the wait doubles from an initial
  delay up to a cap, jittered by 20%.
* **A token-quota refusal is one that names tokens** (:func:`is_token_quota_refusal`):
  a 429 whose ``google.rpc.QuotaFailure`` violations (metric, id or description) or
  message mention tokens. Only such a refusal can be cured by a smaller job; any other
  429 (requests per minute, concurrent jobs) only waits.
* :func:`plan_batches` keeps the order it is given and never exceeds either limit,
  except that a chunk larger than ``max_bytes`` on its own goes alone into a job of
  its own rather than raising: one odd chunk must not stall the whole queue, and the
  remote answer then fails that one chunk through the normal retry budget.

The module stays pure: it knows keys only through two small protocols
(:class:`BatchKeyHolder`, :class:`SecretLike`), not through :mod:`asemantic.keys`.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from asemantic.domain.documents import EmbeddingStatus, IngestMode
from asemantic.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidModeError,
    MissingBatchKeyError,
    ProviderError,
    ProviderRequestError,
)

__all__ = [
    "BatchKeyHolder",
    "DEFAULT_AUTO_BATCH_MIN_TOKENS",
    "ErrorClass",
    "RETRYABLE_HTTP_STATUSES",
    "RetryConfig",
    "RetryPolicy",
    "SecretLike",
    "backoff_delay",
    "choose_mode",
    "classify_line_error",
    "create_retry_delay",
    "full_jitter",
    "is_retryable_status",
    "is_token_quota_refusal",
    "is_transient",
    "jittered_delay",
    "next_chunk_status",
    "parse_mode",
    "plan_batches",
    "refused_before_acting",
    "require_batch_key",
    "retry_info_delay",
    "scrub",
    "should_flush",
]

DEFAULT_AUTO_BATCH_MIN_TOKENS = 20_000
"""``auto`` picks the Batch API from this many tokens to embed (with a batch key)."""

_REQUEST_TIMEOUT = 408  # the one 4xx after which the provider may still have acted
RETRYABLE_HTTP_STATUSES = frozenset({_REQUEST_TIMEOUT, 429, 500, 502, 503, 504})
"""HTTP statuses after which the same request may succeed: worth trying again."""

_RETRYABLE_GRPC = frozenset({4, 8, 13, 14})  # DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...
_RETRYABLE_STATUS_NAMES = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"}
)
_MAX_DOUBLINGS = 64  # 2**64 times any delay is past any cap; keeps the float finite
_SCRUBBED = "***"


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


def is_retryable_status(status: int | None) -> bool:
    """Whether a call that failed with HTTP ``status`` is worth trying again."""
    return status is not None and status in RETRYABLE_HTTP_STATUSES


def refused_before_acting(status: int | None) -> bool:
    """Whether HTTP ``status`` proves the provider did not act on the request.

    A 4xx other than 408: the request was refused as it stood (a 429 included). A 408,
    a 5xx or no status at all leaves the outcome unknown.
    """
    return status is not None and 400 <= status < 500 and status != _REQUEST_TIMEOUT


def is_transient(exc: BaseException) -> bool:
    """Whether waiting alone may cure ``exc`` (rate limits, 5xx, timeouts).

    Only a :class:`~asemantic.errors.ProviderError` may be: not a rejected key
    (:class:`~asemantic.errors.AuthenticationError`) nor a refused request
    (:class:`~asemantic.errors.ProviderRequestError`).
    """
    return isinstance(exc, ProviderError) and not isinstance(
        exc, AuthenticationError | ProviderRequestError
    )


def classify_line_error(code: int | None, status: str | None) -> ErrorClass:
    """Classify one failed result line by its error ``code`` and ``status`` name.

    ``code`` is an HTTP status or a gRPC code; either kind of transient code, or a
    transient status name, makes the line retryable.
    """
    if is_retryable_status(code) or (code is not None and code in _RETRYABLE_GRPC):
        return ErrorClass.RETRYABLE
    if status is not None and status.strip().upper() in _RETRYABLE_STATUS_NAMES:
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


def backoff_delay(attempt: int, *, initial: float, cap: float) -> float:
    """The delay after failure number ``attempt`` (from 1): doubling from ``initial``,
    never above ``cap``; 0 before any failure."""
    if attempt < 1:
        return 0.0
    return min(cap, initial * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))


def full_jitter(ceiling: float, rng: random.Random) -> float:
    """A delay drawn uniformly from ``[0, ceiling]``."""
    if ceiling < 0:
        raise InvalidInputError(f"a delay must not be negative, got {ceiling!r}")
    return rng.uniform(0.0, ceiling)


def jittered_delay(interval: float, jitter: float, rng: random.Random) -> float:
    """``interval`` spread uniformly over ``interval * [1 - jitter, 1 + jitter]``."""
    if jitter <= 0:
        return interval
    low, high = interval * (1.0 - jitter), interval * (1.0 + jitter)
    return min(high, max(low, rng.uniform(low, high)))


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """Retries for idempotent calls: exponential backoff with full jitter.

    ``attempts`` counts the first call; ``timeout`` bounds each attempt. The delay after
    attempt ``n`` is drawn from ``[0, min(max_delay, initial_delay * 2**(n-1))]``; a
    ``Retry-After`` header, when the provider sends one, sets a floor for it (capped by
    ``max_delay``).
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
        """Seconds to wait after failed attempt ``attempt`` (from 1) before the next."""
        ceiling = backoff_delay(attempt, initial=self.initial_delay, cap=self.max_delay)
        delay = full_jitter(ceiling, rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay


class SecretLike(Protocol):
    """Anything that keeps a secret and shows it on request (:class:`asemantic.keys.Secret`)."""

    def reveal(self) -> str: ...


class BatchKeyHolder(Protocol):
    """Anything that knows whether it has a batch key (:class:`asemantic.keys.GoogleKeyring`)."""

    @property
    def has_batch_key(self) -> bool: ...


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def retry_info_delay(error: object) -> float | None:
    """The delay a ``google.rpc.RetryInfo`` detail asks for, in seconds, or None.

    ``error`` is the error body as JSON (``{"error": {"details": [...]}}``, or the inner
    object). Google's 429 carries the wait there (``"retryDelay": "17s"``), not in a
    ``Retry-After`` header. A malformed or negative delay counts as none.
    """
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, Mapping) or detail.get("@type") != _RETRY_INFO:
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def scrub(text: str, secrets: Iterable[SecretLike | str | None]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``.

    ``secrets`` may mix :class:`SecretLike` objects and plain strings; None and empty
    secrets are skipped.
    """
    values = dict.fromkeys(
        secret if isinstance(secret, str) else secret.reveal()
        for secret in secrets
        if secret is not None
    )
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, _SCRUBBED)
    return text


def require_batch_key(keys: BatchKeyHolder | None) -> None:
    """Raise :class:`~asemantic.errors.MissingBatchKeyError` (the documented
    ``ValueError``) unless ``keys`` has a batch key."""
    if keys is None or not keys.has_batch_key:
        raise MissingBatchKeyError()


_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def is_token_quota_refusal(error: object, message: str = "") -> bool:
    """Whether a 429's body (``error``: the JSON error or its inner object) or
    ``message`` names a token quota (see the module doc)."""
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]
    texts = [message]
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping) or detail.get("@type") != _QUOTA_FAILURE:
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            if isinstance(violation, Mapping):
                texts.extend(
                    str(violation.get(name) or "")
                    for name in ("quotaMetric", "quotaId", "description", "subject")
                )
    return any("token" in text.lower() for text in texts)


def create_retry_delay(
    failures: int,
    retry_after: float | None,
    *,
    initial: float,
    cap: float,
    rng: random.Random,
) -> float:
    """Seconds to wait after refused create number ``failures`` (from 1) of one job."""
    if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
        return retry_after * rng.uniform(1.0, 1.1)
    return jittered_delay(backoff_delay(failures, initial=initial, cap=cap), 0.2, rng)
