"""Progress for long work, on standard error.

On a terminal: a rich progress bar or spinner that disappears when done. In a pipe or
a log: plain lines, a few of them (each tenth of the way, or every few seconds, and
none for fewer than ten items), no ANSI codes and no spinners. With ``--json`` in a
pipe: nothing at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from asemantic.cli.output import Output

__all__ = ["Progress", "progress", "status"]

PLAIN_EVERY_SECONDS = 5.0
PLAIN_MIN_TOTAL = 10
"""Less work than this gets no progress lines in a pipe (it is over at once)."""


class Progress(Protocol):
    """Counts work done; ``item`` names what was just finished."""

    def advance(self, item: str | None = None) -> None: ...


class _Quiet:
    def advance(self, item: str | None = None) -> None:
        return None


class _Plain:
    """A line at the start, each tenth of the way (or every few seconds), and at the end."""

    def __init__(self, output: Output, label: str, total: int, unit: str) -> None:
        self._output = output
        self._label = label
        self._total = total
        self._unit = unit
        self._done = 0
        self._step = max(1, total // 10)
        self._started = time.monotonic()
        self._last = self._started
        self._say(f"{label}: {total:,} {unit}")

    def _say(self, text: str) -> None:
        self._output.err.print(Text(text), soft_wrap=True)

    def advance(self, item: str | None = None) -> None:
        self._done += 1
        now = time.monotonic()
        if self._done == self._total:
            elapsed = now - self._started
            done = f"{self._done:,}/{self._total:,} {self._unit}"
            self._say(f"{self._label}: {done} ({elapsed:.1f} s)")
        elif self._done % self._step == 0 or now - self._last >= PLAIN_EVERY_SECONDS:
            self._say(f"{self._label}: {self._done:,}/{self._total:,} {self._unit}")
        else:
            return
        self._last = now


class _Bar:
    def __init__(self, bar: RichProgress, task: TaskID) -> None:
        self._bar = bar
        self._task = task

    def advance(self, item: str | None = None) -> None:
        self._bar.update(self._task, advance=1, item=item or "")


@contextmanager
def progress(output: Output, label: str, *, total: int, unit: str) -> Iterator[Progress]:
    """A progress reporter for ``total`` pieces of work."""
    if output.stderr_interactive:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[item]}", style="dim", markup=False),
        )
        with RichProgress(*columns, console=output.err, transient=True) as bar:
            yield _Bar(bar, bar.add_task(label, total=total, item=""))
    elif output.json_mode or total < PLAIN_MIN_TOTAL:
        yield _Quiet()
    else:
        yield _Plain(output, label, total, unit)


@contextmanager
def status(output: Output, text: str) -> Iterator[None]:
    """A spinner while something runs (a plain line in a pipe; nothing with ``--json``)."""
    if output.stderr_interactive:
        with output.err.status(Text(text)):
            yield
    else:
        if not output.json_mode:
            output.err.print(Text(f"{text} ..."), soft_wrap=True)
        yield
