"""Where command output goes, and how it looks.

Results go to standard output: rich tables and text for people, one JSON document with
``--json``. Notes, warnings and progress go to standard error, so ``--json`` output stays
parseable. Nothing here prints ANSI codes or spinners when the stream is not a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "Output",
    "count_line",
    "price",
    "relative",
    "short_id",
    "snippet",
    "tokens",
    "usd",
]

PIPE_WIDTH = 160


class Output:
    """Standard output (results) and standard error (notes) for one command."""

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        # file=None: rich writes to whatever sys.stdout / sys.stderr are at print time.
        # soft_wrap: a long line stays one line (in a log or a pipe); tables still fit.
        self.console = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            # A pipe or a log has no width; rich assumes 80 and would cut table cells.
            self.console.width = max(self.console.width, PIPE_WIDTH)

    @property
    def interactive(self) -> bool:
        """Whether standard output is a terminal (live views, spinners, colours)."""
        return self.console.is_terminal

    @property
    def stderr_interactive(self) -> bool:
        return self.err.is_terminal

    def json(self, payload: Any) -> None:
        """One JSON document on standard output."""
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=_default))

    def json_line(self, payload: Any) -> None:
        """One JSON object on one line (a stream of events)."""
        click.echo(json.dumps(payload, ensure_ascii=False, default=_default))

    def print(self, renderable: RenderableType = "") -> None:
        """A rich renderable, or text taken literally (no markup)."""
        if isinstance(renderable, str):
            renderable = Text(renderable)
        self.console.print(renderable)

    def line(self, text: str = "", *, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""))

    def note(self, text: str) -> None:
        """A remark on standard error (``note: ...``)."""
        self.err.print(Text(f"note: {text}", style="dim"))

    def warn(self, text: str) -> None:
        self.err.print(Text(f"warning: {text}", style="yellow"))

    def table(self, *columns: str, title: str | None = None) -> Table:
        """A table: light lines on a terminal, none in a pipe or a log."""
        return Table(
            *columns,
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD if self.interactive else None,
            show_edge=False,
            pad_edge=False,
            header_style="bold" if self.interactive else "",
        )


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def usd(amount: float) -> str:
    """Dollars, with enough decimals for the tiny sums embeddings cost."""
    if amount >= 100:
        return f"${amount:,.2f}"
    return f"${amount:.6f}"


def price(per_million: float) -> str:
    """A list price, with at least two decimals (cents): ``$0.075``, ``$0.20``."""
    text = f"{per_million:g}"
    if "e" not in text:
        whole, _, decimals = text.partition(".")
        text = f"{whole}.{decimals.ljust(2, '0')}"
    return f"${text}"


def tokens(count: int) -> str:
    return f"{count:,}"


def count_line(
    counts: Mapping[str, int], order: Sequence[str] | None = None, *, nonzero: bool = False
) -> str:
    """``READY 16 · PENDING 0 · FAILED 0`` (``nonzero``: leave out the zeros)."""
    keys: Iterable[str] = order if order is not None else counts.keys()
    parts = [f"{key} {counts.get(key, 0):,}" for key in keys if counts.get(key, 0) or not nonzero]
    return " · ".join(parts) if parts else "none"


def short_id(job_id: str) -> str:
    return job_id[:8]


def snippet(text: str, limit: int = 240) -> str:
    """The text on one line, cut at a word boundary near ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + " …"


def relative(path: str) -> str:
    """``path`` relative to the current directory when it lies below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
