"""Configuration: validation, overrides, jitter and backoff bounds, batching thresholds."""

from __future__ import annotations

import math
import random
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asemantic import (
    BatchSupervisor,
    InvalidInputError,
    JobStatus,
    SupervisorConfig,
)
from asemantic.domain.policy import backoff_delay, jittered_delay
from asemantic.testing.emulator import GeminiEmulator
from tests.supervisor.conftest import (
    OpenCore,
    eventually,
    fast,
    ingest,
    job_statuses,
    keep_completing,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_interval", 0),
        ("poll_interval", -1.0),
        ("poll_interval", math.nan),
        ("poll_interval", math.inf),
        ("poll_interval", "30"),
        ("lease_ttl", 0),
        ("pause_initial", 0),
        ("pause_max", -5),
        ("max_wait", -0.1),
        ("lease_wait", math.nan),
        ("stop_timeout", -1),
        ("jitter", 1.0),
        ("jitter", -0.1),
        ("jitter", True),
        ("min_batch_size", 0),
        ("max_batch_size", 0),
        ("max_concurrent_jobs", 0),
        ("max_concurrent_jobs", 2.5),
        ("max_concurrent_jobs", True),
    ],
)
def test_invalid_values_are_refused_with_the_field_name(field: str, value: Any) -> None:
    with pytest.raises(InvalidInputError, match=field):
        SupervisorConfig(**{field: value})


def test_inconsistent_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="min_batch_size"):
        SupervisorConfig(min_batch_size=20, max_batch_size=10)
    with pytest.raises(ValueError, match="pause_max"):
        SupervisorConfig(pause_initial=10, pause_max=5)


def test_defaults() -> None:
    config = SupervisorConfig()
    assert config.max_concurrent_jobs == 50
    assert config.lease_wait == 0 and 0 < config.jitter < 1
    assert config.min_batch_size <= config.max_batch_size


async def test_overrides_apply_and_unknown_ones_are_refused(open_core: OpenCore) -> None:
    core = await open_core()
    base = SupervisorConfig(poll_interval=5)
    supervisor = BatchSupervisor(core, base, max_wait=1.5, min_batch_size=3)
    assert supervisor.config == SupervisorConfig(poll_interval=5, max_wait=1.5, min_batch_size=3)
    assert BatchSupervisor(core).config == SupervisorConfig()
    with pytest.raises(InvalidInputError, match="poll_intervall"):
        BatchSupervisor(core, poll_intervall=3)
    with pytest.raises(InvalidInputError, match="poll_interval"):
        BatchSupervisor(core, poll_interval=-3)
    with pytest.raises(InvalidInputError, match="SupervisorConfig"):
        BatchSupervisor(core, {"poll_interval": 3})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="owner"):
        BatchSupervisor(core, owner="  ")
    assert "owner='svc-1'" in repr(BatchSupervisor(core, owner="svc-1"))


@given(
    interval=st.floats(min_value=1e-6, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=0.999),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_stays_within_its_bounds(interval: float, jitter: float, seed: int) -> None:
    delay = jittered_delay(interval, jitter, random.Random(seed))
    assert interval * (1 - jitter) <= delay <= interval * (1 + jitter)
    assert delay > 0


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(jittered_delay(10.0, 0.2, rng), 6) for _ in range(50)}
    assert len(delays) > 40 and min(delays) >= 8.0 and max(delays) <= 12.0
    assert jittered_delay(10.0, 0.0, rng) == 10.0


@given(failures=st.integers(min_value=1, max_value=10_000))
def test_backoff_grows_and_is_capped(failures: int) -> None:
    now = backoff_delay(failures, initial=0.5, cap=300.0)
    after = backoff_delay(failures + 1, initial=0.5, cap=300.0)
    assert 0.5 <= now <= after <= 300.0
    assert backoff_delay(1, initial=0.5, cap=300.0) == 0.5
    assert backoff_delay(0, initial=0.5, cap=300.0) == 0.0


async def test_a_small_queue_waits_while_max_wait_is_far(open_core: OpenCore) -> None:
    core = await open_core()
    await ingest(core, 3)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(min_batch_size=10, max_wait=3600)) as sup:

            async def ticked() -> bool:
                return sup.health.ticks >= 5

            await eventually(ticked)
    assert await core.batch_jobs.jobs() == []
    assert (await core.store.count_chunks_by_status())["PENDING"] == 3


async def test_a_small_queue_is_flushed_after_max_wait(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    core = await open_core()
    await ingest(core, 3)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            async with BatchSupervisor(core, fast(min_batch_size=10, max_wait=0.1)) as sup:
                await sup.wait_until_idle()
            helpers.cancel_scope.cancel()
    jobs = await core.batch_jobs.jobs()
    assert [job.status for job in jobs] == [JobStatus.COMPLETED]
    assert jobs[0].stats["sent"] == 3


async def test_a_full_queue_is_flushed_without_waiting(open_core: OpenCore) -> None:
    core = await open_core()
    await ingest(core, 4)
    with anyio.fail_after(10):
        async with BatchSupervisor(core, fast(min_batch_size=4, max_wait=3600)):

            async def flushed() -> bool:
                return await job_statuses(core) == [JobStatus.SUBMITTED]

            await eventually(flushed)


async def test_max_concurrent_jobs_bounds_the_polls(open_core: OpenCore) -> None:
    server = GeminiEmulator(request_latency=0.01)
    core = await open_core(server=server)
    await ingest(core, 8)
    with anyio.fail_after(20):
        async with BatchSupervisor(core, fast(max_batch_size=1, max_concurrent_jobs=2)) as sup:

            async def polled_all() -> bool:
                return len(server.requests_to("batches.get")) >= 16

            await eventually(polled_all)
            assert sup.health.paused_reason is None
    assert server.peak_in_flight("batches.get") == 2
