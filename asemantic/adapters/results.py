"""What one batch result line, or the end of a job, does to a chunk: decided in pure code.

A job store reads the chunks a slice of results names, asks :func:`judge_result` about
each line, and writes the verdicts (vectors, statuses, the usage line) in one
transaction. The rules (contract 2 of the design: a vector only for the chunk's current
text):

* a line counts only for a chunk that is still PENDING in this job and whose content
  hash starts with the key's hash prefix; anything else (an unknown key, a chunk gone,
  READY, FAILED, in another job, or whose text changed) is STALE and discarded;
* a vector makes the chunk READY; its tokens are the provider's count, else the
  estimate made at ingestion;
* an error adds one attempt: a retryable error within the policy's budget puts the chunk
  back in the queue (RETRIED, out of the job, the message kept), anything else FAILS it
  (it stays in the job, with the message).

:func:`release` is the same decision for a job that ended without results for a chunk
(a failed, cancelled or expired job): a retryable loss.

Decisions: engine-neutral (no SQL, no I/O) so the SQLite, memory and later engines judge
results alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.linekeys import parse_line_key
from asemantic.domain.policy import RetryPolicy, classify_line_error, next_chunk_status
from asemantic.ports import LineResult

__all__ = [
    "ChunkState",
    "ChunkUpdate",
    "DEFAULT_RELEASE_REASON",
    "Judgement",
    "Verdict",
    "judge_result",
    "line_error",
    "release",
    "result_chunk_id",
]

DEFAULT_RELEASE_REASON = "job ended"
"""What a chunk failed by :func:`release` records when no reason is given."""


class Verdict(enum.StrEnum):
    """What a result line did to its chunk (one :class:`~asemantic.ports.ApplyCounts` field)."""

    READY = "ready"
    FAILED = "failed"
    RETRIED = "retried"
    STALE = "stale"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkState:
    """What a result is judged against: a chunk as stored before the slice is applied."""

    chunk_id: int
    content_hash: str
    status: EmbeddingStatus
    job_id: str | None
    attempts: int
    token_estimate: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkUpdate:
    """The new status fields of a chunk that failed or goes back to the queue."""

    chunk_id: int
    status: EmbeddingStatus
    error_message: str | None
    attempts: int
    job_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """A verdict, with the vector and tokens (READY) or the chunk update (FAILED, RETRIED)."""

    verdict: Verdict
    vector: bytes | None = None
    tokens: int = 0
    update: ChunkUpdate | None = None


_STALE = Judgement(verdict=Verdict.STALE)


def result_chunk_id(result: LineResult) -> int | None:
    """The chunk id a result's key names, or None for a key asemantic did not write."""
    parsed = parse_line_key(result.key)
    return None if parsed is None else parsed[0]


def judge_result(
    result: LineResult, chunk: ChunkState | None, *, job_id: str, retry: RetryPolicy
) -> Judgement:
    """The verdict on one line, for ``chunk`` (None when the key names no stored chunk)."""
    parsed = parse_line_key(result.key)
    if (
        parsed is None
        or chunk is None
        or chunk.chunk_id != parsed[0]
        or chunk.status is not EmbeddingStatus.PENDING
        or chunk.job_id != job_id
        or not chunk.content_hash.startswith(parsed[1])
    ):
        return _STALE
    if result.vector is not None:
        tokens = result.token_count or chunk.token_estimate
        return Judgement(verdict=Verdict.READY, vector=result.vector, tokens=tokens)
    attempts = chunk.attempts + 1
    error_class = classify_line_error(result.error_code, result.error_status)
    status = next_chunk_status(attempts, error_class, retry)
    failed = status is EmbeddingStatus.FAILED
    update = ChunkUpdate(
        chunk_id=chunk.chunk_id,
        status=status,
        error_message=line_error(result),
        attempts=attempts,
        job_id=job_id if failed else None,
    )
    return Judgement(verdict=Verdict.FAILED if failed else Verdict.RETRIED, update=update)


def release(
    chunk_id: int, attempts: int, policy: RetryPolicy, *, job_id: str, reason: str | None
) -> ChunkUpdate:
    """A PENDING chunk leaves a job that ended: queued again, or FAILED once spent."""
    after = attempts + 1
    status = next_chunk_status(after, classify_line_error(None, "UNAVAILABLE"), policy)
    failed = status is EmbeddingStatus.FAILED
    return ChunkUpdate(
        chunk_id=chunk_id,
        status=status,
        error_message=(reason or DEFAULT_RELEASE_REASON) if failed else None,
        attempts=after,
        job_id=job_id if failed else None,
    )


def line_error(result: LineResult) -> str:
    """The message stored for a failed line: ``"<code> <status>: <message>"``."""
    parts = [str(p) for p in (result.error_code, result.error_status) if p]
    prefix = " ".join(parts)
    message = result.error_message or "unknown error"
    return f"{prefix}: {message}" if prefix else message
