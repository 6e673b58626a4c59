"""``asemantic batch flush|sync|status``: the Batch API pipeline, one step at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from asemantic.batch.manager import SyncReport
from asemantic.cli.commands.jobs import job_record, jobs_table
from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.errors import CliError, ExitCode, KeyHint, from_exception
from asemantic.cli.live import CHUNK_ORDER, JOB_ORDER
from asemantic.cli.output import count_line
from asemantic.cli.progress import status as spinner
from asemantic.core import SemanticCore
from asemantic.domain.jobs import ACTIVE_STATUSES, JobStatus
from asemantic.ports import JobRecord

__all__ = ["batch"]


@click.group()
def batch() -> None:
    """Run the Batch API pipeline by hand (the supervisor does all of it in a loop)."""


async def _records(core: SemanticCore, job_ids: list[str]) -> list[JobRecord]:
    records = [await core.batch_jobs.get_job(job_id) for job_id in job_ids]
    return [record for record in records if record is not None]


async def _preflight(app: AppContext, core: SemanticCore) -> list[str]:
    """Reconcile: checks the batch key and the provider before anything is written."""
    with spinner(app.output, "checking the Batch API"):
        return await core.batch_manager.reconcile()


# --- flush ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Flushed:
    queued: int
    jobs: list[JobRecord]


@batch.command()
@click.option("--force", is_flag=True, help="Flush even when fewer than --min-size are queued.")
@click.option(
    "--min-size",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Flush only when at least this many chunks are queued.",
)
@click.option(
    "--max-size",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="At most this many chunks per job.",
)
@json_option
@pass_app
def flush(app: AppContext, force: bool, min_size: int, max_size: int) -> None:
    """Group queued PENDING chunks into Batch API jobs and submit them."""
    app.key_hint = KeyHint.BATCH
    flushed = app.run(_flush(app, force=force, min_size=min_size, max_size=max_size))
    out = app.output
    if out.json_mode:
        out.json({"queued": flushed.queued, "jobs": [job_record(r) for r in flushed.jobs]})
    elif flushed.jobs:
        sent = sum(int(r.stats.get("sent", 0)) for r in flushed.jobs)
        out.line(f"submitted {len(flushed.jobs)} job(s) with {sent:,} chunk(s)")
        out.print(jobs_table(out, flushed.jobs))
    elif flushed.queued == 0:
        out.line("nothing to flush: no PENDING chunk is waiting for a job")
    else:
        out.line(
            f"{flushed.queued:,} chunk(s) queued, below --min-size {min_size}: nothing flushed "
            "(use --force to flush anyway)"
        )
    stuck = [r for r in flushed.jobs if r.status is JobStatus.CREATED]
    if stuck:
        raise CliError(
            f"{len(stuck)} job(s) could not be submitted: the provider did not accept them",
            code=ExitCode.UNREACHABLE,
            hint="they stay CREATED; the next 'batch flush', 'batch sync' or 'supervise' "
            "submits them",
        )


async def _flush(app: AppContext, *, force: bool, min_size: int, max_size: int) -> _Flushed:
    async with app.core(need=Need.BATCH) as core:
        resubmitted = await _preflight(app, core)
        queued = len(await core.batch_jobs.queued_chunks())
        with spinner(app.output, f"submitting {queued:,} queued chunk(s)"):
            created = await core.batch_manager.flush_queue(
                min_size=min_size, max_size=max_size, force=force
            )
        return _Flushed(queued=queued, jobs=await _records(core, resubmitted + created))


# --- sync -----------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Synced:
    report: SyncReport
    jobs: list[JobRecord] = field(default_factory=list)
    chunks: Mapping[str, int] = field(default_factory=dict)


@batch.command()
@json_option
@pass_app
def sync(app: AppContext) -> None:
    """Poll active jobs once, apply finished results, clean up remote files."""
    app.key_hint = KeyHint.BATCH
    synced = app.run(_sync(app))
    report = synced.report
    if report.auth_error is not None:
        raise from_exception(report.auth_error, key_hint=KeyHint.BATCH, secrets=app.secrets)
    out = app.output
    if out.json_mode:
        out.json(_sync_payload(synced))
    else:
        running = sum(1 for r in synced.jobs if r.status in ACTIVE_STATUSES)
        out.line(
            f"polled {report.polled} job(s): {len(report.completed)} completed, "
            f"{len(report.failed)} failed, {running} still running; "
            f"cleaned up {report.cleaned} remote job(s)"
        )
        if synced.jobs:
            out.print(jobs_table(out, synced.jobs))
        out.line(f"chunks: {count_line(synced.chunks, CHUNK_ORDER)}")
    if report.errors:
        first = next(iter(report.errors.values()))
        raise CliError(
            f"could not poll {len(report.errors)} job(s): {first}",
            code=ExitCode.UNREACHABLE,
            hint="those jobs stay active; run 'asemantic batch sync' again later",
        )


def _sync_payload(synced: _Synced) -> dict[str, Any]:
    report = synced.report
    return {
        "polled": report.polled,
        "completed": report.completed,
        "failed": report.failed,
        "errors": report.errors,
        "cleaned": report.cleaned,
        "jobs": [job_record(r) for r in synced.jobs],
        "chunks": dict(synced.chunks),
    }


async def _sync(app: AppContext) -> _Synced:
    async with app.core(need=Need.BATCH) as core:
        await _preflight(app, core)
        active = await core.batch_jobs.jobs((JobStatus.SUBMITTED, JobStatus.PROCESSING))
        with spinner(app.output, f"polling {len(active)} job(s) and applying results"):
            report = await core.batch_manager.sync_status()
        return _Synced(
            report=report,
            jobs=await _records(core, [r.job_id for r in active]),
            chunks=await core.store.count_chunks_by_status(),
        )


# --- status ---------------------------------------------------------------------------


@batch.command("status")
@json_option
@pass_app
def status_command(app: AppContext) -> None:
    """Show the queue and the active jobs (reads the database only)."""
    chunks, jobs, queued, active = app.run(_status(app))
    out = app.output
    if out.json_mode:
        out.json(
            {
                "chunks": chunks,
                "queued": queued,
                "jobs": jobs,
                "active": [job_record(r) for r in active],
            }
        )
        return
    out.line(f"chunks: {count_line(chunks, CHUNK_ORDER)}")
    out.line(f"queued: {queued:,} PENDING chunk(s) not yet in a job")
    out.line(f"jobs:   {count_line(jobs, JOB_ORDER)}")
    if active:
        out.print(jobs_table(out, active, title="active jobs"))


async def _status(
    app: AppContext,
) -> tuple[dict[str, int], dict[str, int], int, list[JobRecord]]:
    async with app.core(need=Need.NONE) as core:
        stats = await core.stats()
        snapshot = await core.batch_jobs.snapshot()
    active = snapshot.in_status(*ACTIVE_STATUSES)
    return dict(stats.chunks), dict(stats.jobs), len(snapshot.queued), active
