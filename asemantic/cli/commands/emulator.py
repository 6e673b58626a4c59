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
@click.option(
    "--file-processing-seconds",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="How long an upload stays PROCESSING.",
)
@click.option(
    "--enqueued-token-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Batch enqueued-token quota (429 with QuotaFailure above it; default off).",
)
@click.option(
    "--quota-retry-delay",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="RetryInfo delay of a quota 429, in seconds.",
)
@click.option("--keyless-results", is_flag=True, help="Result lines carry no key.")
@click.option(
    "--dense-vectors", is_flag=True, help="Dense values, about 10 KB a line at 768d (Google's)."
)
@click.option(
    "--transfer-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Throttle downloads and upload data to this many bytes a second.",
)
@click.option(
    "--unknown-state",
    default=None,
    metavar="STATE",
    help="Jobs that would succeed show this undocumented state instead.",
)
@click.option(
    "--stateless-done", is_flag=True, help="Jobs that would succeed end done, errored, stateless."
)
def emulator(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    job_seconds: float,
    speed: float,
    file_processing_seconds: float,
    enqueued_token_limit: int | None,
    quota_retry_delay: float,
    keyless_results: bool,
    dense_vectors: bool,
    transfer_rate: float | None,
    unknown_state: str | None,
    stateless_done: bool,
) -> None:
    """Serve an emulation of the Gemini API on loopback until Ctrl-C or SIGTERM.

    The first line on standard output is its base URL (also with --json); point the
    other commands at it with --base-url. Jobs finish after --job-seconds. The
    fidelity options model Google's quotas, slow links and odd answers (all off).
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
    argv += ["--file-processing-seconds", str(file_processing_seconds)]
    argv += ["--quota-retry-delay", str(quota_retry_delay)]
    if enqueued_token_limit is not None:
        argv += ["--enqueued-token-limit", str(enqueued_token_limit)]
    if transfer_rate is not None:
        argv += ["--transfer-rate", str(transfer_rate)]
    if unknown_state:
        argv += ["--unknown-state", unknown_state]
    argv += ["--keyless-results"] if keyless_results else []
    argv += ["--dense-vectors"] if dense_vectors else []
    argv += ["--stateless-done"] if stateless_done else []
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
