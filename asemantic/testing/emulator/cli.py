"""``python -m asemantic.testing.emulator``: serve the emulator until SIGINT or SIGTERM.

The first line on standard output is the base URL (``http://127.0.0.1:PORT``), for
scripts to read. Jobs run on the real clock and finish after ``--job-seconds``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from asemantic.testing.emulator.clock import RealClock
from asemantic.testing.emulator.emulator import DEFAULT_MODELS, GeminiEmulator

__all__ = ["build_parser", "emulator_from_args", "main"]


def build_parser(prog: str = "python -m asemantic.testing.emulator") -> argparse.ArgumentParser:
    """The command-line options (reusable by other command-line tools)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve an emulation of the Gemini Developer API on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept only this key (repeatable; default: any non-empty key)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="embedding model to serve (repeatable; default: gemini-embedding-001 and -2)",
    )
    parser.add_argument(
        "--job-seconds", type=float, default=1.0, help="time a batch job takes (1.0)"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="clock speed-up factor (1.0: real time)"
    )
    fidelity = parser.add_argument_group("fidelity (how much like Google's service)")
    fidelity.add_argument(
        "--file-processing-seconds",
        type=float,
        default=0.0,
        help="time an upload stays PROCESSING before it is ACTIVE (0)",
    )
    fidelity.add_argument(
        "--enqueued-token-limit",
        type=int,
        default=None,
        metavar="TOKENS",
        help="batch enqueued-token quota per project: 429 with QuotaFailure above it (off)",
    )
    fidelity.add_argument(
        "--quota-retry-delay",
        type=float,
        default=60.0,
        help="RetryInfo delay of a quota 429, in seconds (60)",
    )
    fidelity.add_argument(
        "--keyless-results", action="store_true", help="result lines carry no key"
    )
    fidelity.add_argument(
        "--dense-vectors",
        action="store_true",
        help="dense full-precision values (~10 KB a line at 768d, like Google's)",
    )
    fidelity.add_argument(
        "--transfer-rate",
        type=float,
        default=None,
        metavar="BYTES_PER_S",
        help="throttle downloads and upload data to this rate (off)",
    )
    fidelity.add_argument(
        "--unknown-state",
        default=None,
        metavar="STATE",
        help="jobs that would succeed show this undocumented state instead",
    )
    fidelity.add_argument(
        "--stateless-done",
        action="store_true",
        help="jobs that would succeed end done with an error and no state",
    )
    return parser


def emulator_from_args(args: argparse.Namespace) -> GeminiEmulator:
    """The emulator the parsed options describe (on the real clock)."""
    return GeminiEmulator(
        api_keys=args.api_key or None,
        models=args.model or DEFAULT_MODELS,
        clock=RealClock(speed=args.speed),
        pending_seconds=args.job_seconds * 0.25,
        running_seconds=args.job_seconds * 0.75,
        file_processing_seconds=args.file_processing_seconds,
        enqueued_token_limit=args.enqueued_token_limit,
        quota_retry_delay=args.quota_retry_delay,
        keyless_results=args.keyless_results,
        dense_vectors=args.dense_vectors,
        transfer_rate=args.transfer_rate,
        unknown_state=args.unknown_state,
        stateless_done=args.stateless_done,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    emulator = emulator_from_args(args)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator.serve(host=args.host, port=args.port) as base_url:
            print(base_url, flush=True)
            print(f"Gemini emulator serving on {base_url}; stop with Ctrl-C.", file=sys.stderr)
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
