"""The ``asemantic`` command line.

``asemantic demo`` shows the whole story offline; ``asemantic --help`` lists the
commands, the global options and the exit codes. :func:`main` is the console script.
"""

from __future__ import annotations

from collections.abc import Sequence

from asemantic.cli.app import cli

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    code = cli.main(
        args=list(argv) if argv is not None else None, prog_name="asemantic", standalone_mode=False
    )
    return int(code)
