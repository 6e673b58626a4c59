"""The batch job state machine, and how remote job states map onto it.

::

    CREATED --submit--> SUBMITTED --start--> PROCESSING --complete--> COMPLETED
       |                   |                     |
       +-------------------+-------fail----------+--> FAILED

Decisions:

* The graph is defined once, with a plain synchronous ``transitions.Machine`` built at
  import. No model is ever attached to it: :func:`next_status` reads the machine's
  events, which never change after construction, so any number of threads and jobs can
  share it, and a step costs a dictionary lookup instead of a machine set-up (slow in
  ``transitions``). Nothing in here awaits, persists or notifies: the caller persists
  the :class:`Transition` first and tells hooks afterwards.
* ``complete`` is legal only from PROCESSING. A job may go from PENDING to SUCCEEDED
  between two polls; :func:`plan_for_remote` then fires ``start`` first, so the history
  always shows PROCESSING and the graph keeps a single way into COMPLETED.
* Finished jobs (COMPLETED, FAILED) accept no trigger at all.
* Remote states are accepted as ``JOB_STATE_*`` (the SDK's names), ``BATCH_STATE_*``
  (REST) or bare (``SUCCEEDED``), in any case. An unknown or UNSPECIFIED state is not
  terminal: the plan says ``unknown=True`` and changes nothing, and the caller logs it
  and keeps polling.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from transitions import Machine

from asemantic.errors import InvalidInputError, InvalidTransitionError

__all__ = [
    "ACTIVE_STATUSES",
    "JobStatus",
    "JobTrigger",
    "RemotePlan",
    "RemoteState",
    "TERMINAL_STATUSES",
    "Transition",
    "advance",
    "advance_all",
    "allowed_triggers",
    "next_status",
    "parse_remote_state",
    "plan_for_remote",
]


class JobStatus(enum.StrEnum):
    """Where a batch job stands, as stored in ``batch_jobs.status``."""

    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class JobTrigger(enum.StrEnum):
    """The events that move a job along."""

    SUBMIT = "submit"
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
ACTIVE_STATUSES = frozenset({JobStatus.CREATED, JobStatus.SUBMITTED, JobStatus.PROCESSING})


def _build_table() -> Mapping[tuple[JobStatus, JobTrigger], JobStatus]:
    """Define the graph with ``transitions`` and read it back as an immutable table."""
    status, trigger = JobStatus, JobTrigger
    machine = Machine(
        model=None,
        states=[s.value for s in status],
        initial=status.CREATED.value,
        auto_transitions=False,
        transitions=[
            [trigger.SUBMIT.value, status.CREATED.value, status.SUBMITTED.value],
            [trigger.START.value, status.SUBMITTED.value, status.PROCESSING.value],
            [trigger.COMPLETE.value, status.PROCESSING.value, status.COMPLETED.value],
            [trigger.FAIL.value, sorted(s.value for s in ACTIVE_STATUSES), status.FAILED.value],
        ],
    )
    table: dict[tuple[JobStatus, JobTrigger], JobStatus] = {}
    for event in JobTrigger:
        for source, edges in machine.events[event.value].transitions.items():
            (edge,) = edges  # one unconditional edge per (source, trigger)
            assert edge.dest is not None
            table[JobStatus(source), event] = JobStatus(edge.dest)
    return MappingProxyType(table)


_TABLE = _build_table()


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One step of one job: what gets persisted, then told to hooks."""

    job_id: str
    from_status: JobStatus
    to_status: JobStatus
    at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.at)
        object.__setattr__(self, "from_status", JobStatus(self.from_status))
        object.__setattr__(self, "to_status", JobStatus(self.to_status))


def next_status(current: JobStatus, trigger: JobTrigger) -> JobStatus:
    """Where ``trigger`` takes a job in ``current``, or :class:`InvalidTransitionError`."""
    try:
        status, event = JobStatus(current), JobTrigger(trigger)
    except ValueError:
        raise InvalidTransitionError(
            f"unknown job status or trigger: {str(current)!r}, {str(trigger)!r}"
        ) from None
    try:
        return _TABLE[status, event]
    except KeyError:
        allowed = ", ".join(t.value for t in allowed_triggers(status)) or "none (finished)"
        raise InvalidTransitionError(
            f"cannot {event.value!r} a batch job in status {status.value}; "
            f"allowed triggers: {allowed}"
        ) from None


def allowed_triggers(current: JobStatus) -> tuple[JobTrigger, ...]:
    """The triggers a job in ``current`` accepts, in declaration order."""
    return tuple(trigger for trigger in JobTrigger if (current, trigger) in _TABLE)


def advance(job_id: str, current: JobStatus, trigger: JobTrigger, *, at: datetime) -> Transition:
    """The :class:`Transition` ``trigger`` makes, for the caller to persist."""
    return Transition(
        job_id=job_id, from_status=current, to_status=next_status(current, trigger), at=at
    )


def advance_all(
    job_id: str, current: JobStatus, triggers: Iterable[JobTrigger], *, at: datetime
) -> tuple[Transition, ...]:
    """Fire ``triggers`` in order (all or nothing: an illegal one raises before any)."""
    steps: list[Transition] = []
    for trigger in triggers:
        step = advance(job_id, current, trigger, at=at)
        steps.append(step)
        current = step.to_status
    return tuple(steps)


class RemoteState(enum.StrEnum):
    """The Batch API's job states, in the SDK's spelling."""

    UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
    PENDING = "JOB_STATE_PENDING"
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLED = "JOB_STATE_CANCELLED"
    EXPIRED = "JOB_STATE_EXPIRED"


def parse_remote_state(value: object) -> RemoteState | None:
    """A remote state from the SDK, REST or a bare name; ``None`` when unknown."""
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        return None
    name = value.strip().upper()
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        name = name.removeprefix(prefix)
    try:
        return RemoteState(f"JOB_STATE_{name}")
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemotePlan:
    """What to do with a job after one poll.

    Fire ``triggers_before_apply`` now. If ``apply_results``, download and apply the
    results, then fire ``triggers_after_apply`` (``complete``). ``fail_reason`` is set
    when the plan fails the job. ``unknown`` marks a remote state this version does not
    know (or UNSPECIFIED): nothing changes, keep polling.
    """

    remote: RemoteState | None
    triggers_before_apply: tuple[JobTrigger, ...] = ()
    apply_results: bool = False
    fail_reason: str | None = None
    unknown: bool = False

    @property
    def triggers_after_apply(self) -> tuple[JobTrigger, ...]:
        return (JobTrigger.COMPLETE,) if self.apply_results else ()

    @property
    def finishes_job(self) -> bool:
        return self.apply_results or self.fail_reason is not None


_FAIL_REASONS: Mapping[RemoteState, str] = MappingProxyType(
    {
        RemoteState.FAILED: "the remote batch job failed",
        RemoteState.CANCELLED: "the remote batch job was cancelled",
        RemoteState.EXPIRED: "the remote batch job expired before it finished",
    }
)

# How far each remote state says the job got, as the triggers that lead there from
# CREATED; the plan fires the part of that path the job has not walked yet.
_PATHS: Mapping[RemoteState, tuple[JobTrigger, ...]] = MappingProxyType(
    {
        RemoteState.PENDING: (JobTrigger.SUBMIT,),
        RemoteState.RUNNING: (JobTrigger.SUBMIT, JobTrigger.START),
        RemoteState.SUCCEEDED: (JobTrigger.SUBMIT, JobTrigger.START),
    }
)
_WALKED: Mapping[JobStatus, int] = MappingProxyType(
    {JobStatus.CREATED: 0, JobStatus.SUBMITTED: 1, JobStatus.PROCESSING: 2}
)


def plan_for_remote(current: JobStatus, remote: object) -> RemotePlan:
    """Plan the triggers that bring a local job in line with its remote state.

    A job in CREATED that is being polled was found remotely (adopted after a crash),
    so it has been submitted whatever the remote state; a finished job changes no more.
    """
    state = parse_remote_state(remote)
    if current in TERMINAL_STATUSES:
        return RemotePlan(remote=state, unknown=state in (None, RemoteState.UNSPECIFIED))
    if state is None or state is RemoteState.UNSPECIFIED:
        adopt = (JobTrigger.SUBMIT,) if current is JobStatus.CREATED else ()
        return RemotePlan(remote=state, triggers_before_apply=adopt, unknown=True)
    if state in _FAIL_REASONS:
        return RemotePlan(
            remote=state, triggers_before_apply=(JobTrigger.FAIL,), fail_reason=_FAIL_REASONS[state]
        )
    missing = _PATHS[state][_WALKED[current] :]
    return RemotePlan(
        remote=state,
        triggers_before_apply=missing,
        apply_results=state is RemoteState.SUCCEEDED,
    )


def _require_aware(at: datetime) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError("transition times must be timezone-aware datetimes")
