"""The limits a batch pass works within: job size in tokens, job age, and backoff.

A :class:`JobLimits` is handed to :class:`~asemantic.batch.manager.BatchManager` (its
default) or to one of its calls; a supervisor builds one from its
:class:`~asemantic.batch.supervisor_config.SupervisorConfig`.

Decisions:

* **What a job's stats say about waiting.** Waits are persisted in the job's stats
  (integers, in the database) so that ``asemantic jobs`` and a restarted supervisor see
  them: ``retry_at_ms`` is when a refused create may be tried again,
  ``create_refusals`` how many creates of the job were refused, ``next_poll_at_ms`` when
  a job in a remote state this version does not know is polled again, ``odd_polls`` how
  many such polls there were, ``submitted_at_ms`` when the job was submitted (its age
  counts from there) and ``cleanup_failures`` how many clean-ups of a finished job
  failed.
* Stats only ever hold integers: times are epoch milliseconds, rounded up, so a wait
  is never cut short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from asemantic.errors import InvalidInputError

__all__ = [
    "CLEANUP_FAILURES",
    "CREATE_REFUSALS",
    "DEFAULT_MAX_JOB_AGE",
    "JobLimits",
    "NEXT_POLL_AT",
    "ODD_POLLS",
    "RETRY_AT",
    "SUBMITTED_AT",
    "epoch_ms",
    "stat_time",
]

DEFAULT_MAX_JOB_AGE = 36 * 3600.0
"""Seconds a submitted job may stay unfinished (Google expires jobs after 48 h and aims
at 24 h): past it, the job is cancelled and its chunks are queued again."""

RETRY_AT = "retry_at_ms"
CREATE_REFUSALS = "create_refusals"
NEXT_POLL_AT = "next_poll_at_ms"
ODD_POLLS = "odd_polls"
SUBMITTED_AT = "submitted_at_ms"
CLEANUP_FAILURES = "cleanup_failures"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobLimits:
    """How big a job may be, how old it may get, and how refused calls back off.

    * ``max_job_tokens``: a job holds at most this many (estimated) tokens; None: no
      limit but the one learned from the provider's refusals (see
      :mod:`asemantic.batch.quota`).
    * ``max_job_age``: seconds a submitted job may stay unfinished before it is
      cancelled and its chunks are queued again (None: no limit).
    * ``backoff_initial``/``backoff_max``: the wait after a refused create (when the
      provider names none) and between polls of a job in an unknown state, doubling
      from the first to the second.
    * ``backoff``: whether this backoff applies at all. A supervisor's passes (its own
      loop) always back off; a :class:`~asemantic.batch.manager.BatchManager` called
      directly defaults to ``backoff=False``: each call is the caller's pace, and only a
      wait the provider asked for (``RetryInfo``) is honoured.
    """

    max_job_tokens: int | None = None
    max_job_age: float | None = DEFAULT_MAX_JOB_AGE
    backoff_initial: float = 5.0
    backoff_max: float = 300.0
    backoff: bool = True

    def __post_init__(self) -> None:
        tokens = self.max_job_tokens
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)):
            raise InvalidInputError(f"max_job_tokens must be an integer, got {tokens!r}")
        if tokens is not None and tokens < 1:
            raise InvalidInputError(f"max_job_tokens must be at least 1, got {tokens!r}")
        for name in ("max_job_age", "backoff_initial", "backoff_max"):
            value = getattr(self, name)
            if value is None and name == "max_job_age":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise InvalidInputError(f"{name} must be a finite number > 0, got {value!r}")
        if self.backoff_max < self.backoff_initial:
            raise InvalidInputError("backoff_max must not be shorter than backoff_initial")


def epoch_ms(at: datetime | float) -> int:
    """``at`` (a datetime or epoch seconds) in whole epoch milliseconds, rounded up."""
    seconds = at.timestamp() if isinstance(at, datetime) else at
    return math.ceil(seconds * 1000)


def stat_time(stats: Mapping[str, int], name: str) -> float | None:
    """A time kept in a job's stats, in epoch seconds, or None."""
    value = stats.get(name)
    return value / 1000 if value else None
