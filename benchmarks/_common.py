"""What every benchmark module shares: the row format, medians, and quiet libraries.

A row is one figure next to its baseline measured in the same run:

* ``name``: what was measured; ``figure`` and ``unit``;
* ``baseline``: what it is compared with, and ``baseline_figure`` in the same unit;
* ``ratio``: ``figure / baseline_figure`` (for a rate, higher is better; for a time,
  lower is better: the target says which);
* ``target``: the goal in words (empty: informational), and ``met``: whether the
  figure reaches it (None when there is no target).

Benchmarks print figures and never assert on timings.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import TypedDict

__all__ = [
    "Row",
    "format_number",
    "print_rows",
    "quiet",
    "row",
]


class Row(TypedDict):
    """One line of the benchmark table (see the module docstring)."""

    name: str
    figure: float
    unit: str
    baseline: str
    baseline_figure: float
    ratio: float
    target: str
    met: bool | None


def row(
    name: str,
    figure: float,
    unit: str,
    *,
    baseline: str,
    baseline_figure: float,
    target: str = "",
    met: bool | None = None,
) -> Row:
    """A :class:`Row`; ``ratio`` is ``figure / baseline_figure`` (NaN for a zero baseline)."""
    ratio = figure / baseline_figure if baseline_figure else math.nan
    return Row(
        name=name,
        figure=figure,
        unit=unit,
        baseline=baseline,
        baseline_figure=baseline_figure,
        ratio=ratio,
        target=target,
        met=met,
    )


def format_number(value: float) -> str:
    """Thousands separators for big figures, three significant places for small ones."""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence asemantic's warnings (expected ones, such as scripted faults) and the
    SDK's ExperimentalWarning while a benchmark runs."""
    logger = logging.getLogger("asemantic")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental.*")
            yield
    finally:
        logger.setLevel(level)


def print_rows(rows: Sequence[Row]) -> None:
    """A plain table of ``rows`` (the runner prints the full one)."""
    width = max((len(r["name"]) for r in rows), default=9)
    for r in rows:
        print(
            f"{r['name']:<{width}}  {format_number(r['figure']):>10} {r['unit']:<8} "
            f"{format_number(r['baseline_figure']):>10}  x{format_number(r['ratio'])}  "
            f"{r['baseline']}"
        )
