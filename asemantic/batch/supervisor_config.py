"""How a batch supervisor paces itself, and what it reports about its state.

:class:`SupervisorConfig` holds the settings (checked when made), :class:`SupervisorHealth`
the state a health endpoint shows. :mod:`asemantic.batch.supervisor` uses them and
re-exports both classes; the delays between ticks are computed from the settings by
:mod:`asemantic.domain.policy` (``jittered_delay``, ``backoff_delay``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asemantic.batch.deadline import FallbackSpend
from asemantic.batch.limits import DEFAULT_MAX_JOB_AGE, JobLimits

# Re-imported only for asemantic.batch.supervisor, which still takes it from here.
from asemantic.errors import InvalidInputError

__all__ = [
    "SupervisorConfig",
    "SupervisorHealth",
    "resolve_config",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    """How a supervisor paces itself (all durations in seconds).

    * ``poll_interval``: time between two ticks, spread by ``jitter`` (a fraction in
      ``[0, 1)``: 0.2 means anywhere from 80% to 120% of the interval).
    * ``min_batch_size``/``max_batch_size``: a queue smaller than ``min_batch_size``
      waits, but never longer than ``max_wait``; a job holds at most
      ``max_batch_size`` chunks.
    * ``max_job_tokens``: a job holds at most this many (estimated) tokens (None: no
      limit but the one learned from the provider's token-quota refusals; see
      :mod:`asemantic.batch.quota`).
    * ``max_job_age``: a submitted job unfinished this long is cancelled and its chunks
      are queued again (None: never; see :mod:`asemantic.batch.stuck`).
    * ``deadline``: an aware datetime; once it has passed, chunks still PENDING are
      embedded online (the core's online embedder) for at most ``deadline_budget_usd``
      dollars in this supervisor run (see :mod:`asemantic.batch.deadline`). None: never.
    * ``max_concurrent_jobs``: at most this many remote polls at a time.
    * ``lease_ttl``: how long the lease outlives a supervisor that stops renewing it
      (a crashed or frozen process). ``lease_wait``: how long entering waits for
      another supervisor's lease (0: fail at once with :class:`SupervisorLeaseError`).
    * ``pause_initial``/``pause_max``: the delay after a failed tick, doubling from the
      first to the second while failures repeat; also the wait after a refused create
      that names no delay (``RetryInfo``), and between polls of a job in an odd state.
    * ``stop_timeout``: how long a graceful stop lets the step in progress finish
      before cancelling it (0: cancel at once).

    Per-call timeouts and retries of remote calls are set where the calls are made:
    ``GeminiSettings(retry=RetryConfig(timeout=..., attempts=...))``.
    """

    poll_interval: float = 30.0
    jitter: float = 0.2
    min_batch_size: int = 10
    max_batch_size: int = 10_000
    max_job_tokens: int | None = None
    max_job_age: float | None = DEFAULT_MAX_JOB_AGE
    deadline: datetime | None = None
    deadline_budget_usd: float = 1.0
    max_concurrent_jobs: int = 50
    max_wait: float = 300.0
    lease_ttl: float = 60.0
    lease_wait: float = 0.0
    pause_initial: float = 5.0
    pause_max: float = 300.0
    stop_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("poll_interval", "lease_ttl", "pause_initial", "pause_max"):
            _check_seconds(name, getattr(self, name), allow_zero=False)
        for name in ("max_wait", "lease_wait", "stop_timeout"):
            _check_seconds(name, getattr(self, name), allow_zero=True)
        for name in ("min_batch_size", "max_batch_size", "max_concurrent_jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an integer of at least 1, got {value!r}")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise InvalidInputError(f"jitter must be a fraction within [0, 1), got {jitter!r}")
        if self.min_batch_size > self.max_batch_size:
            raise InvalidInputError("min_batch_size must not exceed max_batch_size")
        if self.pause_max < self.pause_initial:
            raise InvalidInputError("pause_max must not be shorter than pause_initial")
        self.job_limits()  # checks max_job_tokens and max_job_age
        if self.deadline is not None and (
            not isinstance(self.deadline, datetime) or self.deadline.tzinfo is None
        ):
            raise InvalidInputError("deadline must be an aware datetime (with a time zone)")
        _check_seconds("deadline_budget_usd", self.deadline_budget_usd, allow_zero=True)

    def job_limits(self) -> JobLimits:
        """The limits the supervisor's passes work within."""
        return JobLimits(
            max_job_tokens=self.max_job_tokens,
            max_job_age=self.max_job_age,
            backoff_initial=self.pause_initial,
            backoff_max=self.pause_max,
        )


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        wanted = "a finite number of seconds >= 0" if allow_zero else "a finite number > 0"
        raise InvalidInputError(f"{name} must be {wanted}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorHealth:
    """The supervisor's state, for a health endpoint or a progress view.

    ``ticks`` counts the ticks that ran to their end (``last_tick_at``: when the latest
    did, in epoch seconds). ``paused_reason`` is set while a persistent failure (a
    rejected key, a full disk) holds the loop back; ``last_error`` is the latest failure
    of any kind (also a lost lease). ``failures`` counts consecutive failed ticks and
    ``backoff`` is the delay chosen after the latest one (both reset by a good tick).
    ``create_wait_until`` (epoch seconds) is set while creates wait after the provider
    refused one (a 429: its quota is full), and ``waiting_jobs`` counts the jobs that
    wait to be created. ``online_fallback`` is what embedding online past the
    ``deadline`` spent in this run (None without a deadline). No text in here contains
    an API key.
    """

    running: bool
    ticks: int
    paused_reason: str | None
    last_error: str | None
    last_tick_at: float | None
    failures: int = 0
    backoff: float | None = None
    create_wait_until: float | None = None
    waiting_jobs: int = 0
    online_fallback: FallbackSpend | None = None


def resolve_config(config: SupervisorConfig | None, overrides: dict[str, Any]) -> SupervisorConfig:
    """``config`` (the defaults if None) with keyword ``overrides`` of its fields."""
    if config is None:
        config = SupervisorConfig()
    elif not isinstance(config, SupervisorConfig):
        raise InvalidInputError(f"config must be a SupervisorConfig, not {type(config).__name__}")
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(SupervisorConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown supervisor setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return dataclasses.replace(config, **overrides)
