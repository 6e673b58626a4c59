"""Logging for the command line: to standard error, redacted, quiet unless ``-v``.

Without ``-v`` only warnings and errors show (``warning: ...``); ``-v`` adds asemantic's
own INFO messages, ``-vv`` everything at DEBUG. The library never logs keys; the handler
still replaces the keys it was given with ``***`` before writing anything.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from asemantic.cli.errors import redact

__all__ = ["configure_logging"]


class _Short(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


class _CliHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (which tests and rich may swap)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = redact(self.format(record), self.secrets)
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def configure_logging(verbose: int, secrets: Iterable[str]) -> None:
    """Install (once) and set up the command line's log handler."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _CliHandler)), None)
    if handler is None:
        handler = _CliHandler()
        root.addHandler(handler)
    handler.secrets = tuple(s for s in secrets if s)
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_Short())
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    levels = {0: logging.WARNING, 1: logging.INFO}
    logging.getLogger("asemantic").setLevel(levels.get(verbose, logging.DEBUG))
