"""``asemantic demo``: the offline demo (or ``--live`` against Google)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from asemantic.cli.commands.search import hit_record, render_hits
from asemantic.cli.commands.stats import render_cost, stats_record
from asemantic.cli.context import AppContext, json_option, pass_app
from asemantic.cli.demo import DEMO_QUERIES, LIVE_DB, DemoOptions, DemoResult, Narrator, run_demo
from asemantic.cli.errors import CliError, ExitCode
from asemantic.cli.live import CHUNK_ORDER, JOB_ORDER
from asemantic.cli.output import Output, count_line
from asemantic.domain.documents import SearchHit

__all__ = ["demo"]

OFFLINE_TIMEOUT = 45.0
LIVE_TIMEOUT = 1800.0


class _Printer(Narrator):
    """Tells the story on standard output as the demo goes."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._steps = 0

    def intro(self, result: DemoResult) -> None:
        if result.live:
            where = result.base_url or "Google's Gemini API"
            self._out.line(f"asemantic demo, live against {where}", style="bold")
            self._out.warn(
                "this sends the sample corpus (a few thousand tokens, well under a cent) "
                "to Gemini; batch jobs can take minutes to hours"
            )
        else:
            self._out.line(
                f"asemantic demo: offline, against the Gemini emulator on {result.base_url} "
                "(no key, no network; its clock runs 60x fast)",
                style="bold",
            )
        self._out.line(f"database: {result.database}")

    def step(self, text: str) -> None:
        self._steps += 1
        self._out.line()
        self._out.line(f"{self._steps}. {text}", style="bold cyan")

    def ingested(self, row: dict[str, Any]) -> None:
        name = Path(str(row["source"])).name
        if row["chunks_pending"]:
            self._out.line(f"   {name:<40} {row['chunks_pending']} chunk(s) PENDING")
        else:
            self._out.line(f"   {name:<40} unchanged ({row['chunks_unchanged']} chunk(s))")

    def searched(self, query: str, hits: Sequence[SearchHit]) -> None:
        if self._steps < 3:
            self.step("search")
        self._out.line()
        self._out.line(f'   "{query}"', style="bold")
        render_hits(self._out, hits, short_source=True)


@click.command()
@click.option(
    "--live", is_flag=True, help="Run against the real Gemini API with your keys (costs a little)."
)
@click.option(
    "--db",
    "demo_db",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Keep the demo database here (default: a temporary folder; with --live: {LIVE_DB}).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help=f"Seconds to wait for the batch jobs (default {OFFLINE_TIMEOUT:g}; "
    f"with --live {LIVE_TIMEOUT:g}).",
)
@json_option
@pass_app
def demo(app: AppContext, live: bool, demo_db: Path | None, timeout: float | None) -> None:
    """Ingest the sample corpus through the Batch API route, search it, show the savings.

    Offline by default: a Gemini emulator on a loopback port stands in for Google, so no
    key and no network are needed, and the run takes a few seconds.
    """
    options = DemoOptions(
        live=live,
        db=demo_db or (app.db if app.db_explicit else None),
        timeout=timeout or (LIVE_TIMEOUT if live else OFFLINE_TIMEOUT),
        queries=DEMO_QUERIES,
    )
    out = app.output
    narrator = None if out.json_mode else _Printer(out)
    result = app.run(run_demo(app, options, narrate=narrator))
    if out.json_mode:
        out.json(_payload(result))
    else:
        _finish(out, result)
    if not result.idle and not live:
        raise CliError(
            "the demo's batch jobs did not finish in time",
            code=ExitCode.FAILURE,
            hint="run again with -v to see what the supervisor did",
        )


def _finish(out: Output, result: DemoResult) -> None:
    assert result.stats is not None
    out.line()
    out.line("4. what the batch route saved (list prices, gemini-embedding-001)", style="bold cyan")
    out.line(f"   chunks: {count_line(result.stats.chunks, CHUNK_ORDER)}")
    out.line(f"   jobs:   {count_line(result.stats.jobs, JOB_ORDER)}")
    render_cost(out, result.stats.cost)
    if not result.idle:
        out.warn(
            "not every chunk is embedded yet; the jobs keep running remotely: run "
            f"'asemantic --db {result.database} supervise' to finish them"
        )
    out.line()
    out.line(f"done in {result.seconds:.1f} s", style="dim")


def _payload(result: DemoResult) -> dict[str, Any]:
    assert result.stats is not None
    return {
        "live": result.live,
        "database": result.database,
        "base_url": result.base_url,
        "ingested": result.ingested,
        "idle": result.idle,
        "transitions": result.transitions,
        "searches": [
            {"query": q, "hits": [hit_record(rank, hit) for rank, hit in enumerate(hits, 1)]}
            for q, hits in result.searches
        ],
        **stats_record(result.stats),
        "seconds": round(result.seconds, 3),
    }
