"""Jobs sized to the provider's token quota: a limit set, and one learned by halving.

Google limits the tokens a project may have enqueued in batch jobs (reported from
about 500k at Tier 1 to 10M at Tier 3); a job over that limit is refused with 429
RESOURCE_EXHAUSTED on every attempt, however long it waits.

Decisions:

* **Two limits, the smaller wins.** ``max_job_tokens`` (the supervisor's setting, None
  by default) and the limit this database learned (kept in the job store:
  :meth:`~asemantic.ports.JobStore.job_token_limit`). Tokens are the estimates of
  :func:`~asemantic.domain.tokens.approximate_tokens`. Jobs are planned under the limit
  when the queue is flushed, and a job still over it (planned before the limit was
  learned) is shrunk before anything of it is uploaded.
* **A token-quota refusal halves the job** (:func:`on_token_refusal`) when the job was
  alone: no other job of this database was queued remotely, so the job by itself is
  over the quota. The learned limit becomes half the job's tokens (never raised by a
  refusal), the job keeps the chunks that fit under it, the others go back to the
  queue with their attempts unchanged (the quota is not their fault), and the job's
  input, which no longer matches, is deleted. Work always progresses: halving ends at
  one chunk per job, and a one-chunk job, or one refused while other jobs of this
  database are queued (they may be what fills the quota), waits and tries again as
  after a rate limit.
* The learned limit is kept until forgotten (``JobStore.set_job_token_limit(None)``,
  or ``asemantic supervise --forget-token-limit``): quotas rise with the tier, rarely
  by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asemantic.batch.limits import JobLimits
from asemantic.batch.view import PassView
from asemantic.domain.jobs import JobStatus
from asemantic.domain.tokens import approximate_tokens
from asemantic.errors import ProviderError
from asemantic.ports import BatchBackend, BatchLine, JobNote, JobRecord, JobStore

if TYPE_CHECKING:
    from asemantic.batch.manager import BatchManager

__all__ = ["BYTES_PER_TOKEN", "effective_limit", "fitting", "line_tokens", "on_token_refusal"]

logger = logging.getLogger("asemantic.batch.manager")

BYTES_PER_TOKEN = 4
"""Bytes of text a token stands for when a flush plans jobs by size (the estimate of
:func:`~asemantic.domain.tokens.approximate_tokens`: about four letters a token)."""


async def effective_limit(jobs: JobStore, limits: JobLimits) -> int | None:
    """The tokens a job may hold: the smaller of the setting and the learned limit."""
    learned = await jobs.job_token_limit()
    candidates = [t for t in (limits.max_job_tokens, learned) if t is not None]
    return min(candidates) if candidates else None


def line_tokens(line: BatchLine) -> int:
    return max(1, approximate_tokens(line.text))


def fitting(lines: Sequence[BatchLine], limit: int | None) -> int:
    """How many of ``lines``, from the first, fit under ``limit`` tokens (at least one)."""
    if limit is None:
        return len(lines)
    total = 0
    for count, line in enumerate(lines):
        total += line_tokens(line)
        if total > limit:
            return max(1, count)
    return len(lines)


async def shrink(
    manager: BatchManager, backend: BatchBackend, record: JobRecord, keep: int, view: PassView
) -> JobRecord | None:
    """The job keeps its first ``keep`` chunks; the rest are queued again and the job's
    input (if any) is deleted. None when the job moved on meanwhile."""
    from asemantic.batch.submit import delete_files  # the two modules call each other

    moved = await manager.jobs.shrink_job(record.job_id, keep=keep)
    logger.info("batch job resized to its token limit", extra={"kept": keep, "requeued": moved})
    if record.input_file is not None:
        await delete_files(backend, [record.input_file])
    noted = await manager.jobs.note_job(
        JobNote(job_id=record.job_id, expected=JobStatus.CREATED, clear_input_file=True)
    )
    if noted is not None:
        view.record(noted)
    return noted


async def on_token_refusal(
    manager: BatchManager,
    backend: BatchBackend,
    record: JobRecord,
    lines: Sequence[BatchLine],
    exc: ProviderError,
    view: PassView,
    limits: JobLimits,
) -> bool:
    """A create refused for a token quota (see the module doc). False: stop submitting."""
    from asemantic.batch.submit import defer

    others = [
        job
        for job in view.jobs(JobStatus.SUBMITTED, JobStatus.PROCESSING)
        if job.job_id != record.job_id
    ]
    if others or len(lines) <= 1:
        await defer(manager, record, exc, view, limits)
        return False
    tokens = sum(line_tokens(line) for line in lines)
    halved = max(1, tokens // 2)
    learned = await manager.jobs.job_token_limit()
    if learned is None or halved < learned:
        await manager.jobs.set_job_token_limit(halved)
    logger.warning(
        "batch create refused for the token quota; jobs now hold at most %d tokens", halved
    )
    keep = min(fitting(lines, halved), len(lines) - 1)
    await shrink(manager, backend, record, keep, view)
    return True
