"""Remote jobs that do not behave: too old, in odd states, duplicated, hard to delete.

The batch manager asks this module what to do with them.

Decisions:

* **Age.** A submitted job still unfinished ``max_job_age`` seconds after it was
  submitted (``submitted_at_ms``; its creation time for a job adopted after a crash)
  is cancelled remotely, failed locally and its chunks are queued again (one attempt
  counted): a job PENDING for more than a day is a known failure of the Batch API, and
  Google would only expire it after 48 h. The clean-up of failed jobs then deletes its
  remote job and files.
* **Odd states.** A state this version does not know, an UNSPECIFIED one, and ``done``
  with an error and no state, change nothing at once: the job is polled again after a
  doubling wait (``next_poll_at_ms``, ``odd_polls`` in its stats) until it turns into a
  known state or reaches ``max_job_age`` (then as above).
* **Duplicates.** Two remote jobs with one display name (a create retried after a lost
  answer, by this process or another): the one the job row names, or for a job not yet
  submitted the one furthest along, is kept; the others are cancelled and deleted,
  without the input file, which they share with the kept one.
* **Clean-up is bounded.** Each file of a finished job is deleted on its own, and the
  batch is deleted even when a file delete fails. A delete the provider refuses (a 4xx)
  is logged and not tried again; one that failed for a while (a 5xx, a timeout) is
  retried on later passes, up to :data:`MAX_CLEANUP_ATTEMPTS` passes, then given up
  and logged: the Files API deletes files itself after 48 h.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from asemantic.batch.limits import (
    CLEANUP_FAILURES,
    NEXT_POLL_AT,
    ODD_POLLS,
    SUBMITTED_AT,
    JobLimits,
    epoch_ms,
    stat_time,
)
from asemantic.batch.view import PassView
from asemantic.domain.jobs import RemoteState, parse_remote_state
from asemantic.domain.policy import backoff_delay, is_retryable_status
from asemantic.errors import AuthenticationError, ProviderError
from asemantic.ports import BatchBackend, JobNote, JobRecord, RemoteJobStatus

if TYPE_CHECKING:
    from asemantic.batch.manager import BatchManager

__all__ = [
    "MAX_CLEANUP_ATTEMPTS",
    "clean_job",
    "drop_duplicates",
    "job_age",
    "keep_of",
    "note_odd_state",
    "poll_due",
    "remote_by_name",
    "retire",
    "too_old",
    "unfinished",
]

logger = logging.getLogger("asemantic.batch.manager")

MAX_CLEANUP_ATTEMPTS = 5
"""Passes a finished job's clean-up may fail transiently before it is given up."""

_PROGRESS = {
    RemoteState.SUCCEEDED: 4,
    RemoteState.RUNNING: 3,
    RemoteState.PENDING: 2,
}


def job_age(record: JobRecord, now: float) -> float:
    """Seconds since the job was submitted (since its creation if that is unknown)."""
    submitted = stat_time(record.stats, SUBMITTED_AT) or record.created_at.timestamp()
    return now - submitted


def unfinished(state: str) -> bool:
    """Whether a remote state says the job may still finish (odd states included)."""
    return parse_remote_state(state) in (
        None,
        RemoteState.UNSPECIFIED,
        RemoteState.PENDING,
        RemoteState.RUNNING,
    )


def too_old(record: JobRecord, now: float, limits: JobLimits) -> bool:
    return limits.max_job_age is not None and job_age(record, now) > limits.max_job_age


def poll_due(record: JobRecord, now: float) -> bool:
    """Whether a job in an odd state is due for its next poll (any other job always is)."""
    next_poll = stat_time(record.stats, NEXT_POLL_AT)
    return next_poll is None or now >= next_poll


async def note_odd_state(
    manager: BatchManager, record: JobRecord, state: str, view: PassView, limits: JobLimits
) -> None:
    """Poll a job in an odd state again later (see the module doc)."""
    polls = record.stats.get(ODD_POLLS, 0) + 1
    delay = 0.0
    stats = {**dict(record.stats), ODD_POLLS: polls}
    if limits.backoff:
        delay = backoff_delay(polls, initial=limits.backoff_initial, cap=limits.backoff_max)
        stats[NEXT_POLL_AT] = epoch_ms(manager.now().timestamp() + delay)
    noted = await manager.jobs.note_job(
        JobNote(job_id=record.job_id, expected=record.status, stats=stats)
    )
    if noted is not None:
        view.record(noted)
    logger.warning(
        "remote batch job in a state this version does not know (%s); polling again in %.0f s",
        state,
        delay,
    )


async def retire(
    manager: BatchManager, backend: BatchBackend, record: JobRecord, view: PassView, reason: str
) -> None:
    """Cancel the remote job and fail the local one (its chunks are queued again)."""
    if record.remote_name is not None:
        try:
            await backend.cancel(record.remote_name)
        except AuthenticationError:
            raise
        except ProviderError as exc:
            if exc.status not in (400, 404):  # already finished, or gone
                logger.warning("could not cancel a retired batch job: %s", exc)
    logger.warning("batch job retired: %s", reason)
    await manager.fail(record, reason, view)


def keep_of(record: JobRecord, remotes: list[RemoteJobStatus]) -> RemoteJobStatus | None:
    """Which of the remote jobs carrying the job's display name the job keeps."""
    if not remotes:
        return None
    if record.remote_name is not None:
        return next((r for r in remotes if r.name == record.remote_name), None)
    return max(remotes, key=lambda r: _PROGRESS.get(parse_remote_state(r.state) or _NONE, 0))


_NONE = RemoteState.UNSPECIFIED


async def remote_by_name(
    backend: BatchBackend, active: Collection[JobRecord]
) -> dict[str, RemoteJobStatus]:
    """The remote job each active job keeps, by display name; duplicates deleted."""
    found = await backend.find_jobs_by_display_name([r.display_name for r in active])
    groups: defaultdict[str | None, list[RemoteJobStatus]] = defaultdict(list)
    for remote in found:
        groups[remote.display_name].append(remote)
    kept: dict[str, RemoteJobStatus] = {}
    for record in active:
        remotes = groups.get(record.display_name, [])
        keep = keep_of(record, remotes)
        if keep is not None:
            kept[record.display_name] = keep
        extras = [r for r in remotes if keep is not None and r.name != keep.name]
        await drop_duplicates(backend, extras)
    return kept


async def drop_duplicates(backend: BatchBackend, extras: Iterable[RemoteJobStatus]) -> None:
    """Cancel and delete remote jobs that duplicate a kept one (not their input file)."""
    for extra in extras:
        logger.warning("a second remote batch job carries a job's display name; deleting it")
        try:
            await backend.cancel(extra.name)
        except AuthenticationError:
            raise
        except ProviderError as exc:
            if exc.status not in (400, 404):
                logger.warning("could not cancel a duplicate remote job: %s", exc)
        try:
            await backend.cleanup(extra.name, files=[f for f in (extra.output_file,) if f])
        except AuthenticationError:
            raise
        except ProviderError as exc:
            logger.warning("could not delete a duplicate remote job: %s", exc)


async def clean_job(
    manager: BatchManager, backend: BatchBackend, record: JobRecord, files: list[str]
) -> bool:
    """Delete a finished job's files and batch (see the module doc); True when done
    with it (everything deleted, refused, or given up)."""
    transient = False
    targets: list[tuple[str | None, list[str]]] = [(None, [name]) for name in files]
    if record.remote_name is not None:
        targets.append((record.remote_name, []))
    for batch, names in targets:
        try:
            await backend.cleanup(batch, files=names)
        except AuthenticationError:
            raise
        except ProviderError as exc:
            if exc.status is None or is_retryable_status(exc.status):
                transient = True
            else:
                logger.warning(
                    "the provider refused a delete of a finished job's remote object "
                    "(%s); not retried",
                    exc.status,
                )
    if not transient:
        return True
    failures = record.stats.get(CLEANUP_FAILURES, 0) + 1
    if failures >= MAX_CLEANUP_ATTEMPTS:
        logger.warning("remote clean-up of a finished job failed %d times; given up", failures)
        return True
    await manager.jobs.note_job(
        JobNote(
            job_id=record.job_id,
            expected=record.status,
            stats={**dict(record.stats), CLEANUP_FAILURES: failures},
        )
    )
    logger.warning("remote clean-up failed; will retry on the next pass")
    return False
