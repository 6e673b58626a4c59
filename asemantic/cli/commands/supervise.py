"""``asemantic supervise``: run the batch supervisor until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import click

from asemantic.batch.limits import DEFAULT_MAX_JOB_AGE
from asemantic.batch.supervisor import BatchSupervisor, SupervisorConfig
from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.errors import CliError, ExitCode, KeyHint
from asemantic.cli.live import PipelineView, Snapshot
from asemantic.cli.progress import status as spinner
from asemantic.cli.signals import stop_on_signals
from asemantic.domain.jobs import JobStatus

__all__ = ["parse_deadline", "supervise"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    reason: str
    running_remotely: int
    snapshot: Snapshot


@click.command()
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between two passes (jittered).",
)
@click.option(
    "--min-batch-size",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Queued chunks that make a job at once.",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds a smaller queue waits before it is flushed anyway.",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Chunks a job holds at most.",
)
@click.option(
    "--max-job-tokens",
    type=click.IntRange(1),
    default=None,
    help="Tokens a job holds at most (size jobs under the project's enqueued-token quota).",
)
@click.option(
    "--max-job-age",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_JOB_AGE / 3600,
    show_default=True,
    help="Hours a submitted job may stay unfinished before it is cancelled and requeued.",
)
@click.option(
    "--lease-wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another live supervisor of this database to stop.",
)
@click.option(
    "--deadline",
    metavar="WHEN",
    default=None,
    help="After this time (ISO 8601, or +30m / +6h / +2d from now), embed chunks still "
    "pending online, at the online price.",
)
@click.option(
    "--deadline-budget",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="USD the --deadline fallback may spend online in this run.",
)
@click.option(
    "--forget-token-limit",
    is_flag=True,
    help="Forget the tokens-per-job limit learned from quota refusals (after a tier change).",
)
@click.option(
    "--until-idle", is_flag=True, help="Exit once no chunk is PENDING and no job is active."
)
@json_option
@pass_app
def supervise(
    app: AppContext,
    poll_interval: float,
    min_batch_size: int,
    max_wait: float,
    max_batch_size: int,
    max_job_tokens: int | None,
    max_job_age: float,
    lease_wait: float,
    deadline: str | None,
    deadline_budget: float,
    forget_token_limit: bool,
    until_idle: bool,
) -> None:
    """Flush, poll and apply batch jobs in a loop until Ctrl-C or SIGTERM.

    On a signal it stops after the current step and exits 0; remote jobs keep running
    and the next 'asemantic supervise' resumes them. A supervisor of this database that
    died on this host (kill -9, a crash) is taken over at once; a live one is waited
    for up to --lease-wait seconds. With --json it prints one JSON object per line
    (started, transition, status, stopped).
    """
    app.key_hint = KeyHint.BATCH
    if min_batch_size > max_batch_size:
        raise click.BadParameter("must not exceed --max-batch-size", param_hint="--min-batch-size")
    config = SupervisorConfig(
        poll_interval=poll_interval,
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        max_wait=max_wait,
        max_job_tokens=max_job_tokens,
        max_job_age=max_job_age * 3600,
        lease_wait=lease_wait,
        deadline=parse_deadline(deadline) if deadline else None,
        deadline_budget_usd=deadline_budget,
    )
    outcome = app.run(
        _supervise(app, config, until_idle=until_idle, forget_token_limit=forget_token_limit)
    )
    out = app.output
    if out.json_mode:
        out.json_line(
            {
                "event": "stopped",
                "reason": outcome.reason,
                "running_remotely": outcome.running_remotely,
                "chunks": dict(outcome.snapshot.chunks),
                "jobs": dict(outcome.snapshot.jobs),
            }
        )
    elif outcome.running_remotely:
        out.line(
            f"stopped: {outcome.running_remotely} job(s) still running remotely; "
            "run 'asemantic supervise' again to resume them"
        )
    else:
        out.line(
            "stopped: no job is running"
            if outcome.reason == "signal"
            else "idle: every chunk is embedded and no job is active"
        )


async def _supervise(
    app: AppContext, config: SupervisorConfig, *, until_idle: bool, forget_token_limit: bool
) -> _Outcome:
    out = app.output
    async with app.core(need=Need.BATCH) as core:
        if forget_token_limit:
            await core.batch_jobs.set_job_token_limit(None)
        with spinner(out, "checking the Batch API"):
            # Lookups only: creates wait for the lease (another supervisor may hold it).
            await core.batch_manager.reconcile(before_create=_no_create)
        view = PipelineView.for_output(
            out, poll_interval=config.poll_interval, footer="Ctrl-C stops"
        )
        core.batch_manager.on_transition(view.on_transition)
        stop = asyncio.Event()
        with stop_on_signals(stop):
            if config.lease_wait and not out.json_mode:
                out.note(f"waiting up to {config.lease_wait:g} s for the supervisor lease")
            async with BatchSupervisor(core, config) as supervisor:
                _announce(app, config)
                async with view.running(core, supervisor):
                    reason = await _wait(view, stop, until_idle=until_idle)
                if reason == "halted":
                    raise CliError(
                        f"the supervisor stopped: {supervisor.health.last_error or 'unknown'}",
                        code=ExitCode.FAILURE,
                        hint="another supervisor may have taken over this database's lease",
                    )
        snapshot = await view.refresh(core, None)
        remote = await core.batch_jobs.jobs((JobStatus.SUBMITTED, JobStatus.PROCESSING))
        return _Outcome(reason=reason, running_remotely=len(remote), snapshot=snapshot)


_RELATIVE = re.compile(r"^\+(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_deadline(text: str, *, now: datetime | None = None) -> datetime:
    """``--deadline``: an ISO 8601 time (local time if it names no zone) or ``+N[smhd]``."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now + timedelta(seconds=float(relative[1]) * _UNITS[relative[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            "expected an ISO 8601 time or +N followed by s, m, h or d", param_hint="--deadline"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


async def _no_create() -> bool:
    return False


def _announce(app: AppContext, config: SupervisorConfig) -> None:
    out = app.output
    if out.json_mode:
        out.json_line({"event": "started", "database": app.shown_db, "pid": os.getpid()})
    else:
        out.line(
            f"supervising {app.shown_db} (a pass every {config.poll_interval:g} s, jobs of "
            f"{config.min_batch_size}+ chunks); Ctrl-C or SIGTERM stops"
        )


async def _wait(view: PipelineView, stop: asyncio.Event, *, until_idle: bool) -> str:
    """Why the wait ended: ``signal``, ``idle`` or ``halted`` (the supervisor stopped)."""
    waiters: dict[str, Callable[[], Awaitable[object]]] = {
        "signal": stop.wait,
        "halted": view.wait_halted,
    }
    if until_idle:
        waiters["idle"] = view.wait_idle
    reasons: list[str] = []

    async def watch(reason: str, wait: Callable[[], Awaitable[object]]) -> None:
        await wait()
        reasons.append(reason)
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for reason, wait in waiters.items():
            group.start_soon(watch, reason, wait)
    return reasons[0]
