"""``asemantic emulator``: serve the Gemini emulator on loopback (for offline use)."""

from __future__ import annotations

import click

from asemantic.cli.errors import CliError, ExitCode

__all__ = ["emulator"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to bind (0: any free port).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY",
    help="Accept only this key (repeatable; default: any non-empty key).",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="How long a batch job takes.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Clock speed-up factor.",
)
def emulator(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    job_seconds: float,
    speed: float,
) -> None:
    """Serve an emulation of the Gemini API on loopback until Ctrl-C or SIGTERM.

    The first line on standard output is its base URL (also with --json); point the
    other commands at it with --base-url. Jobs finish after --job-seconds.
    """
    argv = [
        "--host",
        host,
        "--port",
        str(port),
        "--job-seconds",
        str(job_seconds),
        "--speed",
        str(speed),
    ]
    for key in api_keys:
        argv += ["--api-key", key]
    # Test tooling, loaded only when this command runs (not for ``--help``).
    from asemantic.testing.emulator.cli import main as emulator_main

    try:
        code = emulator_main(argv)
    except OSError as exc:
        raise CliError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            code=ExitCode.FAILURE,
            hint="pick another --port (0: any free port)",
        ) from None
    if code:
        raise CliError("the emulator stopped with an error", code=ExitCode.FAILURE)
