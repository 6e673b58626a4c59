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
from asemantic.testing.emulator.emulator import GeminiEmulator

__all__ = ["build_parser", "main"]


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
        help="embedding model to serve (repeatable; default: gemini-embedding-001)",
    )
    parser.add_argument(
        "--job-seconds", type=float, default=1.0, help="time a batch job takes (1.0)"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="clock speed-up factor (1.0: real time)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    emulator = GeminiEmulator(
        api_keys=args.api_key or None,
        models=args.model or ("gemini-embedding-001",),
        clock=RealClock(speed=args.speed),
        pending_seconds=args.job_seconds * 0.25,
        running_seconds=args.job_seconds * 0.75,
    )
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
