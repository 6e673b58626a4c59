"""``asemantic jobs``: the batch jobs of the database, with their states and stats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from asemantic.batch.limits import CREATE_REFUSALS, NEXT_POLL_AT, RETRY_AT, stat_time
from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.output import Output, short_id
from asemantic.domain.jobs import JobStatus
from asemantic.ports import JobRecord

__all__ = ["job_note", "job_record", "jobs", "jobs_table"]

_STATS = ("sent", "succeeded", "failed")


def job_record(record: JobRecord) -> dict[str, Any]:
    """A job as a JSON-ready dict (no keys in it: the database holds none)."""
    return {
        "job_id": record.job_id,
        "status": record.status.value,
        "remote_name": record.remote_name,
        "display_name": record.display_name,
        "stats": dict(record.stats),
        "error": record.error_message,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "remote_cleaned": record.cleaned,
        "create_retry_at": _iso(stat_time(record.stats, RETRY_AT)),
        "next_poll_at": _iso(stat_time(record.stats, NEXT_POLL_AT)),
    }


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone().strftime("%H:%M:%S")


def job_note(record: JobRecord) -> str:
    """The table's note: the error, the remote clean-up, or what the job waits for."""
    if record.error_message:
        return record.error_message
    if record.cleaned:
        return "remote cleaned up"
    retry_at = stat_time(record.stats, RETRY_AT)
    if record.status is JobStatus.CREATED and retry_at:
        refusals = record.stats.get(CREATE_REFUSALS, 0)
        return f"create refused {refusals}x; next try at {_local(retry_at)}"
    next_poll = stat_time(record.stats, NEXT_POLL_AT)
    if not record.status.is_terminal and next_poll:
        return f"odd remote state; next poll at {_local(next_poll)}"
    return ""


def jobs_table(out: Output, records: Sequence[JobRecord], *, title: str | None = None) -> Table:
    table = out.table("job", "status", "remote", *_STATS, "updated", "note", title=title)
    for record in records:
        note = job_note(record)
        table.add_row(
            short_id(record.job_id),
            record.status.value,
            record.remote_name or "-",
            *(str(record.stats.get(name, "-")) for name in _STATS),
            record.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            note,
        )
    return table


@click.command()
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in JobStatus], case_sensitive=False),
    help="Only jobs in this state (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Show the most recent N jobs.",
)
@json_option
@pass_app
def jobs(app: AppContext, statuses: tuple[str, ...], limit: int) -> None:
    """List batch jobs with their states and stats (reads the database only)."""
    wanted = [JobStatus(s.upper()) for s in statuses] or None
    records = app.run(_jobs(app, wanted))
    shown = records[-limit:]
    out = app.output
    if out.json_mode:
        out.json({"total": len(records), "jobs": [job_record(r) for r in shown]})
        return
    if not records:
        out.line("no batch jobs yet")
        return
    out.print(jobs_table(out, shown))
    if len(records) > len(shown):
        out.note(f"showing the {len(shown)} most recent of {len(records)} jobs (--limit)")


async def _jobs(app: AppContext, statuses: list[JobStatus] | None) -> list[JobRecord]:
    async with app.core(need=Need.NONE) as core:
        return await core.batch_jobs.jobs(statuses)
