"""The supervisor over a real loopback socket: per-call timeouts and stopping mid-request."""

from __future__ import annotations

import anyio

from asemantic import BatchSupervisor, JobStatus, RetryConfig
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.supervisor.conftest import (
    OpenCore,
    eventually,
    fast,
    ingest,
    job_statuses,
    keep_completing,
    lease_row,
    vector_counts,
)


async def test_over_loopback_a_hung_poll_times_out_and_the_next_tick_goes_on(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    retry = RetryConfig(attempts=1, initial_delay=0.001, max_delay=0.005, timeout=0.3)
    async with emulator.serve() as base_url:
        core = await open_core(base_url=base_url, retry=retry)
        await ingest(core, 3)
        emulator.faults.add(Fault(endpoint="batches.get", latency=3.0, times=1))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as helpers:
                helpers.start_soon(keep_completing, emulator)
                async with BatchSupervisor(core, fast()) as supervisor:
                    await supervisor.wait_until_idle()
                    assert supervisor.health.paused_reason is None
                helpers.cancel_scope.cancel()
    assert await vector_counts(core) == (3, 3)
    assert not emulator.faults.pending()  # the hung call did happen
    assert [r.status for r in emulator.requests_to("batches.create")] == [200]


async def test_over_loopback_stop_abandons_a_request_in_flight(
    open_core: OpenCore, emulator: GeminiEmulator
) -> None:
    async with emulator.serve() as base_url:
        core = await open_core(base_url=base_url)
        await ingest(core, 2)
        with anyio.fail_after(10):
            async with BatchSupervisor(core, fast(stop_timeout=0.05)):

                async def submitted() -> bool:
                    return await job_statuses(core) == [JobStatus.SUBMITTED]

                await eventually(submitted)
                emulator.faults.add(Fault(endpoint="batches.get", latency=5.0, times=1))
                await eventually(lambda: _hung(emulator))  # then leave the block
        assert await lease_row(core) is None
        assert await job_statuses(core) == [JobStatus.SUBMITTED]
        assert not emulator.requests_to("batches.cancel")


async def _hung(emulator: GeminiEmulator) -> bool:
    """The scripted slow ``batches.get`` has been taken by a request."""
    return not emulator.faults.pending()
