"""Transition events are frozen values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from asemantic.domain.events import Stats, TransitionEvent
from asemantic.domain.jobs import JobMachine, JobStatus, JobTrigger
from asemantic.errors import InvalidInputError

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def make(**stats: int) -> TransitionEvent:
    return TransitionEvent(
        job_id="j",
        remote_name="batches/1",
        from_status=JobStatus.SUBMITTED,
        to_status=JobStatus.PROCESSING,
        at=NOW,
        stats=stats,
    )


def test_events_are_frozen_and_stats_immutable() -> None:
    source = {"sent": 3}
    event = make(**source)
    source["sent"] = 99
    assert event.stats == {"sent": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.job_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cast(Any, event.stats)["sent"] = 4
    assert isinstance(event.stats, Stats)


def test_events_are_hashable_and_comparable() -> None:
    assert make(sent=1) == make(sent=1)
    assert hash(make(sent=1)) == hash(make(sent=1))
    assert make(sent=1) != make(sent=2)
    assert len({make(sent=1), make(sent=1)}) == 1


def test_statuses_are_coerced_and_checked() -> None:
    raw: dict[str, Any] = {"job_id": "j", "remote_name": None, "at": NOW, "to_status": "FAILED"}
    event = TransitionEvent(from_status=JobStatus("CREATED"), **raw)
    assert event.to_status is JobStatus.FAILED and event.stats == {}
    with pytest.raises(ValueError, match="LIMBO"):
        TransitionEvent(**raw, from_status=cast(JobStatus, "LIMBO"))


@pytest.mark.parametrize("stats", [{"sent": True}, {"sent": 1.5}, {1: 2}])
def test_stats_must_map_names_to_integers(stats: dict[object, object]) -> None:
    with pytest.raises(InvalidInputError):
        Stats(stats)  # type: ignore[arg-type]


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        dataclasses.replace(make(), at=datetime(2025, 1, 1))


def test_an_event_announces_a_machine_move() -> None:
    machine = JobMachine(JobStatus.PROCESSING)
    before = machine.status
    event = TransitionEvent(
        job_id="j",
        remote_name="batches/9",
        from_status=before,
        to_status=machine.fire(JobTrigger.COMPLETE),
        at=NOW,
        stats={"succeeded": 5},
    )
    assert (event.from_status, event.to_status, event.remote_name) == (
        JobStatus.PROCESSING,
        JobStatus.COMPLETED,
        "batches/9",
    )
    assert event.stats["succeeded"] == 5 and repr(event.stats) == "Stats({'succeeded': 5})"
