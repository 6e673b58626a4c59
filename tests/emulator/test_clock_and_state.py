"""Job lifecycle on the emulator's clock, expiry, file lifetime and leftovers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from asemantic.testing.emulator import EmulatorRequest, GeminiEmulator, ManualClock, RealClock

from .conftest import create_inline_batch, raw


def _state(emulator: GeminiEmulator, name: str) -> str:
    state: str = raw(emulator, "GET", f"/v1beta/{name}").json()["metadata"]["state"]
    return state


def test_jobs_follow_the_configured_durations() -> None:
    emulator = GeminiEmulator(pending_seconds=5, running_seconds=20)
    name = create_inline_batch(emulator, ["a"])["name"]
    assert _state(emulator, name) == "BATCH_STATE_PENDING"
    emulator.advance(4.9)
    assert _state(emulator, name) == "BATCH_STATE_PENDING"
    emulator.advance(0.1)
    assert _state(emulator, name) == "BATCH_STATE_RUNNING"
    emulator.advance(19)
    assert _state(emulator, name) == "BATCH_STATE_RUNNING"
    emulator.advance(1)
    assert _state(emulator, name) == "BATCH_STATE_SUCCEEDED"
    info = emulator.batch(name)
    assert info.done
    assert info.end_time == datetime.fromtimestamp(info.create_time.timestamp() + 25, tz=UTC)


def test_a_job_not_done_within_48_hours_expires() -> None:
    emulator = GeminiEmulator(running_seconds=72 * 3600)
    name = create_inline_batch(emulator, ["a"])["name"]
    emulator.advance(47 * 3600)
    assert _state(emulator, name) == "BATCH_STATE_RUNNING"
    emulator.advance(3600)
    operation = raw(emulator, "GET", f"/v1beta/{name}").json()
    assert operation["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    assert operation["done"] is True
    assert "output" not in operation["metadata"]
    assert operation["error"]["code"] == 4


def test_complete_all_finishes_jobs_without_moving_time(emulator: GeminiEmulator) -> None:
    first = create_inline_batch(emulator, ["a"], display_name="one")["name"]
    second = create_inline_batch(emulator, ["b"], display_name="two")["name"]
    before = emulator.now
    emulator.complete_all()
    assert emulator.now == before
    assert {info.state for info in emulator.batches} == {"BATCH_STATE_SUCCEEDED"}
    assert _state(emulator, first) == _state(emulator, second) == "BATCH_STATE_SUCCEEDED"


def test_files_disappear_after_their_ttl(emulator: GeminiEmulator) -> None:
    create_inline_batch(emulator, ["a"])
    start = raw(
        emulator,
        "POST",
        "/upload/v1beta/files",
        {"file": {"mimeType": "text/plain"}},
        headers={"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"},
    )
    upload_id = (start.header("x-goog-upload-url") or "").split("upload_id=")[1].split("&")[0]
    raw(
        emulator,
        "POST",
        "/upload/v1beta/files",
        b"data",
        key=None,
        query=(("upload_id", upload_id),),
        headers={"x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": "0"},
    )
    assert len(emulator.files) == 1
    emulator.advance(48 * 3600)
    assert len(emulator.files) == 0
    assert not emulator.remote_leftovers().files


def test_leftovers_list_what_nobody_deleted(emulator: GeminiEmulator) -> None:
    assert not emulator.remote_leftovers()
    name = create_inline_batch(emulator, ["a"])["name"]
    leftovers = emulator.remote_leftovers()
    assert leftovers
    assert [info.name for info in leftovers.batches] == [name]
    assert raw(emulator, "DELETE", f"/v1beta/{name}").status == 200
    assert not emulator.remote_leftovers()


def test_manual_clock_start_and_direction() -> None:
    clock = ManualClock(datetime(2025, 3, 1, tzinfo=UTC))
    emulator = GeminiEmulator(clock=clock)
    assert emulator.now == datetime(2025, 3, 1, tzinfo=UTC)
    operation = create_inline_batch(emulator, ["a"])
    assert operation["metadata"]["createTime"] == "2025-03-01T00:00:00.000000Z"
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_a_fast_real_clock_moves_jobs_by_itself() -> None:
    emulator = GeminiEmulator(clock=RealClock(speed=1000.0), pending_seconds=10, running_seconds=10)
    name = create_inline_batch(emulator, ["a"])["name"]
    with pytest.raises(TypeError):
        emulator.advance(1)
    deadline = time.monotonic() + 10
    while _state(emulator, name) != "BATCH_STATE_SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_ids_are_deterministic_for_a_seed() -> None:
    names = [create_inline_batch(GeminiEmulator(seed=7), ["a"])["name"] for _ in range(2)]
    assert names[0] == names[1]
    assert create_inline_batch(GeminiEmulator(seed=8), ["a"])["name"] != names[0]


async def test_request_latency_applies_to_every_request() -> None:
    emulator = GeminiEmulator(request_latency=0.001)
    raw(emulator, "GET", "/v1beta/files")
    response = await emulator.handle_async(
        EmulatorRequest(method="GET", path="/v1beta/batches", headers={"x-goog-api-key": "k"})
    )
    assert response.status == 200
    assert [r.endpoint for r in emulator.requests] == ["files.list", "batches.list"]
    emulator.clear_requests()
    assert emulator.requests == ()
    assert emulator.peak_in_flight() == 0
