"""The ``asemantic`` command group: global options, and errors shown as one line."""

from __future__ import annotations

import errno
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from asemantic.cli.commands.batch import batch
from asemantic.cli.commands.copy import copy
from asemantic.cli.commands.demo import demo
from asemantic.cli.commands.emulator import emulator
from asemantic.cli.commands.ingest import ingest
from asemantic.cli.commands.jobs import jobs
from asemantic.cli.commands.search import search
from asemantic.cli.commands.space import space
from asemantic.cli.commands.stats import stats
from asemantic.cli.commands.supervise import supervise
from asemantic.cli.context import BATCH_ENV, ONLINE_ENV, AppContext, database_target
from asemantic.cli.errors import EXIT_CODES_HELP, CliError, ExitCode
from asemantic.cli.logs import configure_logging
from asemantic.domain.models import KNOWN_MODELS
from asemantic.domain.space import DEFAULT_MODEL

__all__ = ["AsemanticGroup", "cli"]

HELP = f"""Semantic search over your own documents with Gemini embeddings, in one SQLite file.

Ingest Markdown and text files, embed them now (online) or later at half price
through the Gemini Batch API, and search them. Try it offline first:
asemantic demo

Keys come from {ONLINE_ENV} (online calls: sync ingestion, search) and
{BATCH_ENV} (the Batch API), or from --api-key / --batch-api-key.
Keys are never printed.
"""


class AsemanticGroup(click.Group):
    """A group whose errors end as ``error: ...`` / ``hint: ...`` and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name or "asemantic", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self, args: Sequence[str] | None, prog_name: str, complete_var: str | None, **extra: Any
    ) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except CliError as exc:
            return _report(exc.message, exc.hint, exc.code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else prog_name
            return _report(exc.format_message(), f"see '{where} --help'", ExitCode.USAGE)
        except click.ClickException as exc:
            return _report(exc.format_message(), None, exc.exit_code)
        except click.Abort:
            return _report("interrupted", None, ExitCode.INTERRUPTED)
        except BrokenPipeError:
            return ExitCode.FAILURE
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return ExitCode.FAILURE
            return _report(str(exc), None, ExitCode.FAILURE)
        return int(result) if isinstance(result, int) else ExitCode.OK


def _report(message: str, hint: str | None, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return int(code)


@click.group(
    "asemantic",
    cls=AsemanticGroup,
    help=HELP,
    epilog=EXIT_CODES_HELP,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    metavar="PATH|URL",
    default="asemantic.db",
    envvar="ASEMANTIC_DB",
    show_envvar=True,
    show_default=True,
    help="The knowledge base: a SQLite file, or a postgresql:// URL.",
)
@click.option(
    "--api-key",
    envvar=ONLINE_ENV,
    show_envvar=True,
    metavar="KEY",
    help="Gemini API key for online calls (sync ingestion, search).",
)
@click.option(
    "--batch-api-key",
    envvar=BATCH_ENV,
    show_envvar=True,
    metavar="KEY",
    help="A separate Gemini API key for the Batch API.",
)
@click.option(
    "--base-url",
    metavar="URL",
    help="Send Gemini calls here instead of Google (an emulator, a proxy).",
)
@click.option(
    "--model",
    type=click.Choice(sorted(KNOWN_MODELS)),
    default=DEFAULT_MODEL,
    show_default=True,
    help="Embedding model (must match an existing database).",
)
@click.option(
    "--dimensions",
    type=click.IntRange(128, 3072),
    default=768,
    show_default=True,
    help="Embedding dimensions (must match an existing database).",
)
@click.option("--json", "json_mode", is_flag=True, help="Machine-readable output (JSON).")
@click.option("-v", "--verbose", count=True, help="Log more (-v: info, -vv: debug).")
@click.version_option(package_name="asemantic")
@click.pass_context
def cli(
    ctx: click.Context,
    db: str,
    api_key: str | None,
    batch_api_key: str | None,
    base_url: str | None,
    model: str,
    dimensions: int,
    json_mode: bool,
    verbose: int,
) -> None:
    warnings.filterwarnings("ignore", message=r".*is experimental and may change.*")
    app = AppContext(
        db=database_target(db),
        db_explicit=ctx.get_parameter_source("db") is not ParameterSource.DEFAULT,
        api_key=api_key,
        batch_key=batch_api_key,
        base_url=base_url,
        model=model,
        dimensions=dimensions,
        json_mode=json_mode,
        verbose=verbose,
    )
    configure_logging(verbose, app.secrets)
    ctx.obj = app
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


for _command in (ingest, search, batch, jobs, supervise, stats, space, copy, emulator, demo):
    cli.add_command(_command)
