"""The BatchJob state machine: every (status, trigger) and (status, remote state) pair."""

from __future__ import annotations

import enum
import itertools
import threading

import pytest

from asemantic.domain.jobs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    JobMachine,
    JobStatus,
    JobTrigger,
    RemotePlan,
    RemoteState,
    allowed_triggers,
    next_status,
    parse_remote_state,
    plan_for_remote,
)
from asemantic.errors import BatchError, InvalidTransitionError

S, T = JobStatus, JobTrigger

LEGAL = {
    (S.CREATED, T.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, T.START): S.PROCESSING,
    (S.PROCESSING, T.COMPLETE): S.COMPLETED,
    (S.CREATED, T.FAIL): S.FAILED,
    (S.SUBMITTED, T.FAIL): S.FAILED,
    (S.PROCESSING, T.FAIL): S.FAILED,
}
ALL_PAIRS = list(itertools.product(JobStatus, JobTrigger))


def test_status_sets_partition_the_statuses() -> None:
    assert set(JobStatus) == TERMINAL_STATUSES | ACTIVE_STATUSES
    assert not TERMINAL_STATUSES & ACTIVE_STATUSES
    assert [s.is_terminal for s in JobStatus] == [False, False, False, True, True]


@pytest.mark.parametrize(("status", "trigger"), ALL_PAIRS)
def test_every_status_trigger_pair(status: JobStatus, trigger: JobTrigger) -> None:
    machine = JobMachine(status)
    if (status, trigger) in LEGAL:
        assert next_status(status, trigger) is LEGAL[status, trigger]
        assert trigger in allowed_triggers(status) and trigger in machine.allowed()
        assert machine.fire(trigger) is LEGAL[status, trigger] is machine.status
    else:
        with pytest.raises(InvalidTransitionError, match=f"cannot '{trigger.value}'"):
            next_status(status, trigger)
        assert trigger not in allowed_triggers(status)
        with pytest.raises(InvalidTransitionError, match=f"cannot '{trigger.value}'"):
            machine.fire(trigger)
        assert machine.status is status  # a refused move changes nothing


def test_plain_strings_work_and_garbage_is_refused() -> None:
    assert next_status("CREATED", "submit") is S.SUBMITTED  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError, match="unknown job status or trigger"):
        next_status(S.CREATED, "explode")  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError):
        next_status("LIMBO", T.FAIL)  # type: ignore[arg-type]
    assert JobMachine("PROCESSING").fire("complete") is S.COMPLETED  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError, match="unknown job status: 'LIMBO'"):
        JobMachine("LIMBO")  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError, match="unknown job trigger: 'explode'"):
        JobMachine().fire("explode")  # type: ignore[arg-type]


def test_the_error_lists_the_allowed_triggers() -> None:
    with pytest.raises(InvalidTransitionError, match="allowed triggers: start, fail"):
        next_status(S.SUBMITTED, T.COMPLETE)
    with pytest.raises(InvalidTransitionError, match=r"none \(finished\)"):
        next_status(S.COMPLETED, T.FAIL)
    assert issubclass(InvalidTransitionError, BatchError)


def test_a_job_machine_walks_the_happy_path_and_then_refuses_everything() -> None:
    machine = JobMachine()
    assert repr(machine) == "JobMachine(CREATED)"
    assert [machine.fire(t) for t in (T.SUBMIT, T.START, T.COMPLETE)] == [
        S.SUBMITTED,
        S.PROCESSING,
        S.COMPLETED,
    ]
    assert machine.allowed() == ()
    with pytest.raises(InvalidTransitionError, match=r"in status COMPLETED; .*none \(finished\)"):
        machine.fire(T.FAIL)
    assert machine.status is S.COMPLETED and repr(machine) == "JobMachine(COMPLETED)"


def test_the_machine_refusal_is_translated_not_leaked() -> None:
    with pytest.raises(InvalidTransitionError) as caught:
        JobMachine(S.CREATED).fire(T.START)
    assert caught.value.__suppress_context__  # transitions' MachineError stays inside
    assert str(caught.value) == (
        "cannot 'start' a batch job in status CREATED; allowed triggers: submit, fail"
    )


def test_machines_are_independent() -> None:
    first, second = JobMachine(), JobMachine()
    first.fire(T.SUBMIT)
    second.fire(T.FAIL)
    assert (first.status, second.status) == (S.SUBMITTED, S.FAILED)
    assert first.allowed() == (T.START, T.FAIL)


def test_the_shared_machine_is_safe_across_threads() -> None:
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(500):
                for (status, trigger), expected in LEGAL.items():
                    assert next_status(status, trigger) is expected
                machine = JobMachine()
                for trigger in (T.SUBMIT, T.START, T.COMPLETE):
                    machine.fire(trigger)
                assert machine.status is S.COMPLETED
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# -- remote states -------------------------------------------------------------------------


class SdkJobState(str, enum.Enum):  # noqa: UP042 - shaped like google.genai.types.JobState
    JOB_STATE_RUNNING = "JOB_STATE_RUNNING"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("JOB_STATE_PENDING", RemoteState.PENDING),
        ("BATCH_STATE_SUCCEEDED", RemoteState.SUCCEEDED),
        ("expired", RemoteState.EXPIRED),
        (" job_state_cancelled ", RemoteState.CANCELLED),
        ("JOB_STATE_UNSPECIFIED", RemoteState.UNSPECIFIED),
        (RemoteState.FAILED, RemoteState.FAILED),
        (SdkJobState.JOB_STATE_RUNNING, RemoteState.RUNNING),
        ("JOB_STATE_PAUSED", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_parse_remote_state(value: object, expected: RemoteState | None) -> None:
    assert parse_remote_state(value) is expected


REASONS = {
    RemoteState.FAILED: "failed",
    RemoteState.CANCELLED: "cancelled",
    RemoteState.EXPIRED: "expired",
}
PLANS: dict[tuple[JobStatus, str], tuple[tuple[JobTrigger, ...], bool, bool]] = {
    # (status, remote): (triggers before apply, apply results, unknown)
    (S.CREATED, "JOB_STATE_PENDING"): ((T.SUBMIT,), False, False),
    (S.CREATED, "JOB_STATE_RUNNING"): ((T.SUBMIT, T.START), False, False),
    (S.CREATED, "JOB_STATE_SUCCEEDED"): ((T.SUBMIT, T.START), True, False),
    (S.CREATED, "JOB_STATE_UNSPECIFIED"): ((T.SUBMIT,), False, True),
    (S.CREATED, "JOB_STATE_WHATEVER"): ((T.SUBMIT,), False, True),
    (S.SUBMITTED, "JOB_STATE_PENDING"): ((), False, False),
    (S.SUBMITTED, "JOB_STATE_RUNNING"): ((T.START,), False, False),
    (S.SUBMITTED, "JOB_STATE_SUCCEEDED"): ((T.START,), True, False),
    (S.SUBMITTED, "JOB_STATE_UNSPECIFIED"): ((), False, True),
    (S.SUBMITTED, "JOB_STATE_WHATEVER"): ((), False, True),
    (S.PROCESSING, "JOB_STATE_PENDING"): ((), False, False),
    (S.PROCESSING, "JOB_STATE_RUNNING"): ((), False, False),
    (S.PROCESSING, "JOB_STATE_SUCCEEDED"): ((), True, False),
    (S.PROCESSING, "JOB_STATE_UNSPECIFIED"): ((), False, True),
    (S.PROCESSING, "JOB_STATE_WHATEVER"): ((), False, True),
}
REMOTES = [*(state.value for state in RemoteState), "JOB_STATE_WHATEVER"]


@pytest.mark.parametrize(("status", "remote"), list(itertools.product(JobStatus, REMOTES)))
def test_every_status_remote_pair(status: JobStatus, remote: str) -> None:
    plan = plan_for_remote(status, remote)
    state = parse_remote_state(remote)
    assert plan.remote is state
    if status in TERMINAL_STATUSES:
        assert (plan.triggers_before_apply, plan.apply_results, plan.fail_reason) == (
            (),
            False,
            None,
        )
        return
    if state in REASONS:
        assert plan.triggers_before_apply == (T.FAIL,)
        assert plan.fail_reason is not None and REASONS[state] in plan.fail_reason
        assert not plan.apply_results and not plan.unknown
    else:
        before, apply, unknown = PLANS[status, remote]
        assert (plan.triggers_before_apply, plan.apply_results, plan.unknown) == (
            before,
            apply,
            unknown,
        )
        assert plan.fail_reason is None
    # Every plan is walkable from where the job stands, then applying results completes.
    machine = JobMachine(status)
    for trigger in plan.triggers_before_apply:
        machine.fire(trigger)
    if plan.apply_results:
        machine.fire(T.COMPLETE)
    final = machine.status
    if plan.apply_results:
        assert final is S.COMPLETED
    elif plan.fail_reason:
        assert final is S.FAILED
    else:
        assert final in ACTIVE_STATUSES


def test_remote_plan_defaults() -> None:
    plan = RemotePlan(remote=None)
    assert (plan.triggers_before_apply, plan.apply_results, plan.fail_reason, plan.unknown) == (
        (),
        False,
        None,
        False,
    )
