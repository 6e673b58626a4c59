"""``asemantic space plan|migrate|status|switch|rollback|drop``: embedding spaces.

Every ``space`` command opens the database in its *active* space (whatever
``--dimensions`` says), so they work before and after a switch. None of them calls
Gemini: ``migrate`` only queues chunks; ``asemantic supervise`` embeds them through the
Batch API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click

from asemantic.adapters.factory import StoreOptions, open_store
from asemantic.cli.context import AppContext, OfflineEmbedder, json_option, pass_app
from asemantic.cli.errors import CliError, ExitCode
from asemantic.cli.output import tokens, usd
from asemantic.config import CoreConfig
from asemantic.core import SemanticCore
from asemantic.domain.space import DEFAULT_MODEL
from asemantic.domain.spaces import MigrationPlan, SpaceRecord, target_space
from asemantic.migration import SpaceStatus, SwitchOutcome

__all__ = ["space"]


@click.group()
def space() -> None:
    """Several embedding spaces: preview, migrate, watch, switch, roll back, drop."""


@asynccontextmanager
async def _core(app: AppContext) -> AsyncIterator[SemanticCore]:
    """The core on the database's active space (no key: nothing here calls Gemini)."""
    app.require_database()
    store = await open_store(app.db, space=None, options=StoreOptions())
    active = store.space
    if active is None:
        await store.aclose()
        raise CliError(
            "the database has no embedding space yet",
            code=ExitCode.DATABASE,
            hint="ingest documents first",
        )
    async with SemanticCore.open(
        store, embedder=OfflineEmbedder(active), config=CoreConfig(space=active)
    ) as core:
        yield core


def _target_options(command: Any) -> Any:
    command = click.option(
        "--task-type",
        default="RETRIEVAL_DOCUMENT",
        show_default=True,
        help="Task type of the target space's document vectors.",
    )(command)
    command = click.option(
        "--to-dimensions", "dimensions", type=int, required=True, help="Target dimensions."
    )(command)
    return click.option(
        "--to-model", "model", default=DEFAULT_MODEL, show_default=True, help="Target model."
    )(command)


def _record(record: SpaceRecord) -> dict[str, Any]:
    progress = record.progress
    return {
        "id": record.space_id,
        "model": record.space.model,
        "dimensions": record.space.dimensions,
        "task_type": record.space.task_type,
        "state": record.state.value,
        "previous_id": record.previous_id,
        "ready": progress.ready,
        "pending": progress.pending,
        "failed": progress.failed,
        "total": progress.total,
    }


def _plan_record(plan: MigrationPlan) -> dict[str, Any]:
    return {
        "target": {
            "model": plan.target.model,
            "dimensions": plan.target.dimensions,
            "task_type": plan.target.task_type,
        },
        "chunks": plan.chunks,
        "tokens": plan.tokens,
        "cost_usd": {"batch": plan.cost_batch_usd, "online": plan.cost_online_usd},
        "savings_usd": plan.savings_usd,
        "seconds": {
            "batch_typical": plan.batch_seconds_typical,
            "batch_max": plan.batch_seconds_max,
            "online": plan.online_seconds,
        },
    }


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


@space.command()
@_target_options
@json_option
@pass_app
def plan(app: AppContext, model: str, dimensions: int, task_type: str) -> None:
    """Dry run: chunks and tokens a migration embeds, its cost and time. Writes nothing."""

    async def work() -> MigrationPlan:
        target = target_space(model=model, dimensions=dimensions, task_type=task_type)
        async with _core(app) as core:
            return await core.space_plan(target)

    result = app.run(work())
    out = app.output
    if out.json_mode:
        out.json(_plan_record(result))
        return
    out.line(f"target:  {result.target.describe()}")
    out.line(f"embeds:  {result.chunks:,} chunk(s), about {tokens(result.tokens)} tokens")
    table = out.table("route", "cost", "time")
    table.add_row(
        "batch",
        usd(result.cost_batch_usd),
        f"typically {_duration(result.batch_seconds_typical)}, "
        f"at most {_duration(result.batch_seconds_max)}",
    )
    table.add_row(
        "online", usd(result.cost_online_usd), f"about {_duration(result.online_seconds)}"
    )
    out.print(table)
    out.line("searches keep using the active space until you switch")


@space.command()
@_target_options
@json_option
@pass_app
def migrate(app: AppContext, model: str, dimensions: int, task_type: str) -> None:
    """Register the target space and queue every chunk for it (supervise embeds them)."""

    async def work() -> SpaceRecord:
        target = target_space(model=model, dimensions=dimensions, task_type=task_type)
        async with _core(app) as core:
            return await core.space_migrate(target)

    record = app.run(work())
    out = app.output
    if out.json_mode:
        out.json(_record(record))
        return
    out.line(
        f"space {record.space_id} ({record.space.describe()}) registered; "
        f"{record.progress.pending:,} chunk(s) queued for the Batch API"
    )
    out.line("run `asemantic supervise` to embed them; searches keep the active space")


def _status_record(status: SpaceStatus) -> dict[str, Any]:
    return {**_record(status.record), "jobs": dict(status.jobs), "cost_usd": status.cost_so_far_usd}


@space.command()
@json_option
@pass_app
def status(app: AppContext) -> None:
    """Every space: state, progress, batch jobs, cost so far."""

    async def work() -> list[SpaceStatus]:
        async with _core(app) as core:
            return await core.space_status()

    result = app.run(work())
    out = app.output
    if out.json_mode:
        out.json({"spaces": [_status_record(s) for s in result]})
        return
    table = out.table("id", "space", "state", "vectors", "pending", "failed", "jobs", "cost")
    for item in result:
        progress = item.record.progress
        active_jobs = sum(
            n for name, n in item.jobs.items() if name in ("CREATED", "SUBMITTED", "PROCESSING")
        )
        table.add_row(
            str(item.space_id),
            item.record.space.describe(),
            item.state.value,
            f"{progress.ready:,}/{progress.total:,}",
            f"{progress.pending:,}",
            f"{progress.failed:,}",
            f"{active_jobs} active, {sum(item.jobs.values())} total",
            "see stats" if item.cost_so_far_usd is None else usd(item.cost_so_far_usd),
        )
    out.print(table)


def _switched(app: AppContext, outcome: SwitchOutcome) -> None:
    out = app.output
    record = outcome.active
    if out.json_mode:
        out.json({**_record(record), "from": outcome.previous_id, "missing": outcome.missing})
        return
    out.line(f"space {record.space_id} ({record.space.describe()}) is now active")
    if outcome.forced:
        out.line(
            f"forced: {outcome.missing:,} chunk(s) have no vector in it yet and are not "
            "found by searches until the backfill ends",
            style="yellow",
        )
    out.line(
        f"open the database with --dimensions {record.space.dimensions} from now on "
        "(other dimensions are refused)"
    )


@space.command()
@click.argument("space_id", type=click.IntRange(1))
@click.option("--force", is_flag=True, help="Switch even though some chunks lack vectors.")
@json_option
@pass_app
def switch(app: AppContext, space_id: int, force: bool) -> None:
    """Make SPACE_ID the active space (refused while it lacks vectors, unless --force)."""

    async def work() -> SwitchOutcome:
        async with _core(app) as core:
            spaces = {s.space_id: s.record for s in await core.space_status()}
            record = spaces.get(space_id)
            embedder = OfflineEmbedder(record.space if record is not None else core.space)
            return await core.space_switch(space_id, force=force, embedder=embedder)

    _switched(app, app.run(work()))


@space.command()
@click.option("--force", is_flag=True, help="Roll back even though some chunks lack vectors.")
@json_option
@pass_app
def rollback(app: AppContext, force: bool) -> None:
    """Switch back to the space that was active before the current one."""

    async def work() -> SwitchOutcome:
        async with _core(app) as core:
            spaces = {s.space_id: s.record for s in await core.space_status()}
            active = next(r for r in spaces.values() if r.active)
            previous = spaces.get(active.previous_id or 0)
            embedder = OfflineEmbedder(previous.space if previous is not None else core.space)
            return await core.space_rollback(force=force, embedder=embedder)

    _switched(app, app.run(work()))


@space.command()
@click.argument("space_id", type=click.IntRange(1))
@json_option
@pass_app
def drop(app: AppContext, space_id: int) -> None:
    """Delete the vectors of SPACE_ID (not the active space) and retire it."""

    async def work() -> int:
        async with _core(app) as core:
            return await core.space_drop(space_id)

    gone = app.run(work())
    out = app.output
    if out.json_mode:
        out.json({"id": space_id, "vectors_deleted": gone})
        return
    out.line(f"space {space_id} dropped: {gone:,} vector(s) deleted")
