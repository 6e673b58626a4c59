"""``asemantic copy SRC DST``: move a knowledge base to another engine, verified.

Decisions:

* SRC and DST are positional (a SQLite path or a database URL); the global ``--db`` is
  not used, so a copy never touches a database by default.
* One progress line per page copied, on standard error (none with ``--json``); the
  table of counts and checksums of both sides on standard output, also when the
  verification fails (then exit 5, after the table).
* A URL's password is never printed: targets are shown without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from asemantic.cli.context import AppContext, json_option, pass_app, shown_target
from asemantic.cli.errors import CliError, ExitCode
from asemantic.cli.output import Output
from asemantic.copy import CopyProgress, CopyReport, copy_knowledge_base
from asemantic.copy.copier import DEFAULT_BATCH_SIZE
from asemantic.errors import TransferVerificationError

__all__ = ["copy", "copy_record"]


def copy_record(report: CopyReport) -> dict[str, Any]:
    return {
        "source_engine": report.source_engine,
        "destination_engine": report.destination_engine,
        "database_id": report.database_id,
        "space": report.space.describe() if report.space else None,
        "resumed": report.resumed,
        "verified": report.verified,
        "tables": [
            {
                "table": table.table,
                "copied": table.copied,
                "source_rows": table.source.rows,
                "destination_rows": table.destination.rows,
                "source_sha256": table.source.checksum,
                "destination_sha256": table.destination.checksum,
                "matches": table.matches,
            }
            for table in report.tables
        ],
    }


def render_report(out: Output, report: CopyReport) -> None:
    table = out.table("table", "copied", "source rows", "dest rows", "sha256 (source)", "check")
    for column in table.columns[1:4]:
        column.justify = "right"
    for row in report.tables:
        check = "ok" if row.matches else f"MISMATCH (dest {row.destination.checksum[:16]})"
        table.add_row(
            row.table,
            f"{row.copied:,}",
            f"{row.source.rows:,}",
            f"{row.destination.rows:,}",
            row.source.checksum[:16],
            check,
        )
    out.print(table)


@click.command("copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per destination transaction.",
)
@json_option
@pass_app
def copy(app: AppContext, source: str, destination: str, batch_size: int) -> None:
    """Copy a knowledge base (documents, chunks, vectors, jobs, usage) from SRC to DST.

    Nothing is embedded again. DST must be empty or a partial copy of SRC (an
    interrupted copy resumes). Both sides' counts and checksums are compared at the
    end. Stop any supervisor of SRC first, and do not supervise SRC afterwards: the
    copy keeps SRC's identity, so DST's supervisor finishes SRC's remote jobs.
    """
    out = app.output

    def progress(step: CopyProgress) -> None:
        if out.json_mode:
            return
        out.err.print(
            f"copy: {step.table} batch {step.batch}: {step.copied:,}/{step.total:,} rows",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    if not out.json_mode:
        out.err.print(
            f"copying {shown_target(source)} -> {shown_target(destination)}",
            markup=False,
            soft_wrap=True,
        )
    report, failure = app.run(_copy(source, destination, batch_size, progress))
    _show(out, report)
    if failure is not None:
        raise CliError(
            str(failure),
            code=ExitCode.DATABASE,
            hint="the destination differs from its source; copy into an empty database",
        )


async def _copy(
    source: str, destination: str, batch_size: int, progress: Callable[[CopyProgress], None]
) -> tuple[CopyReport, TransferVerificationError | None]:
    """The report, and the verification failure (whose report is shown too)."""
    try:
        report = await copy_knowledge_base(
            source, destination, batch_size=batch_size, on_batch=progress
        )
    except TransferVerificationError as exc:
        if not isinstance(exc.report, CopyReport):
            raise
        return exc.report, exc
    return report, None


def _show(out: Output, report: CopyReport) -> None:
    if out.json_mode:
        out.json(copy_record(report))
        return
    render_report(out, report)
    if report.verified:
        resumed = " (resumed)" if report.resumed else ""
        out.line(f"{report.copied:,} rows copied{resumed}; verified: counts and checksums match")
    else:
        out.line(f"{report.copied:,} rows copied; NOT verified", style="bold red")
