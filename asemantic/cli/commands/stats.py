"""``asemantic stats``: documents, chunks, jobs, tokens, cost and what batch saved."""

from __future__ import annotations

from typing import Any

import click

from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.live import CHUNK_ORDER, JOB_ORDER
from asemantic.cli.output import Output, count_line, price, tokens, usd
from asemantic.core import CoreStats
from asemantic.domain.pricing import CostReport

__all__ = ["cost_record", "render_cost", "stats", "stats_record"]


def cost_record(cost: CostReport) -> dict[str, Any]:
    return {
        "tokens": {
            "online": cost.tokens_online,
            "batch": cost.tokens_batch,
            "query": cost.tokens_query,
        },
        "cost_usd": {
            "online": cost.cost_online_usd,
            "batch": cost.cost_batch_usd,
            "query": cost.cost_query_usd,
            "total": cost.total_usd,
        },
        "savings_usd": cost.savings_usd,
        "savings_percent": cost.savings_percent,
        "pricing_usd_per_million_tokens": {
            "online": cost.pricing.online_per_million,
            "batch": cost.pricing.batch_per_million,
        },
    }


def stats_record(stats: CoreStats) -> dict[str, Any]:
    return {
        "documents": stats.documents,
        "chunks": dict(stats.chunks),
        "jobs": dict(stats.jobs),
        "cost": cost_record(stats.cost),
    }


def render_cost(out: Output, cost: CostReport) -> None:
    """Tokens and cost per route, and what the batch route saved, at list prices."""
    pricing = cost.pricing
    table = out.table("route", "tokens", "price per 1M", "cost")
    table.add_row(
        "online",
        tokens(cost.tokens_online),
        price(pricing.online_per_million),
        usd(cost.cost_online_usd),
    )
    table.add_row(
        "batch",
        tokens(cost.tokens_batch),
        price(pricing.batch_per_million),
        usd(cost.cost_batch_usd),
    )
    out.print(table)
    at_online = pricing.online(cost.tokens_batch)
    out.line(
        f"saved by the batch route: {usd(cost.savings_usd)} "
        f"({cost.savings_percent:.0f}% of the {usd(at_online)} the same "
        f"{tokens(cost.tokens_batch)} tokens cost online)",
        style="bold green" if cost.savings_usd > 0 else None,
    )


@click.command()
@json_option
@pass_app
def stats(app: AppContext) -> None:
    """Chunks by status, jobs by state, tokens and cost online vs batch, savings."""
    result = app.run(_stats(app))
    out = app.output
    if out.json_mode:
        out.json({"database": app.shown_db, **stats_record(result)})
        return
    out.line(f"database:  {app.shown_db}")
    out.line(f"documents: {result.documents:,}")
    out.line(f"chunks:    {count_line(result.chunks, CHUNK_ORDER)}")
    out.line(f"jobs:      {count_line(result.jobs, JOB_ORDER)}")
    out.line()
    render_cost(out, result.cost)


async def _stats(app: AppContext) -> CoreStats:
    async with app.core(need=Need.NONE) as core:
        return await core.stats()
