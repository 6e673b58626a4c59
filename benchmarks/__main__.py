"""``python -m benchmarks``: run every ``benchmarks/bench_*.py`` and print one table.

Options: ``--quick`` (small sizes, a smoke run), ``--only NAME`` (``results`` or
``bench_results``; repeatable), ``--json PATH`` (the machine and every row, as JSON).
Targets are informational: the exit status is 1 only when a benchmark crashes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import platform
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import sqlite_vec

import benchmarks
from asemantic.adapters.sqlite import select_driver
from benchmarks._common import Row, format_number, row

__all__ = ["main"]

COLUMNS = ("benchmark", "figure", "unit", "baseline", "baseline figure", "ratio", "target", "met")


# --- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return math.nan


def _sqlite_versions() -> tuple[str, str, str]:
    """The driver asemantic picks, its SQLite version, and sqlite-vec's version."""
    driver = select_driver()
    conn = driver.module.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        vec = str(conn.execute("SELECT vec_version()").fetchone()[0])
    finally:
        conn.close()
    return driver.name, ".".join(map(str, driver.sqlite_version)), vec


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine() -> dict[str, str]:
    driver, sqlite, vec = _sqlite_versions()
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "cpu": _cpu_model(),
        "cores": f"{usable} usable of {cores}",
        "ram": f"{_ram_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": f"{sqlite} ({driver})",
        "sqlite-vec": vec,
        "numpy": _version("numpy"),
        "orjson": _version("orjson"),
        "google-genai": _version("google-genai"),
    }


# --- running the modules -----------------------------------------------------------------


def discover() -> list[str]:
    """The names of every ``bench_*`` module, sorted."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    )


def select(names: Sequence[str], only: Sequence[str]) -> list[str]:
    if not only:
        return list(names)
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in only}
    unknown = wanted - set(names)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {names}")
    return [n for n in names if n in wanted]


def normalize(raw: Mapping[str, Any]) -> Row:
    """A row in the runner's format; also reads ``{name: "X vs Y", baseline: number}``."""
    name = str(raw["name"])
    figure = float(raw["figure"])
    if "baseline_figure" in raw:
        baseline, baseline_figure = str(raw["baseline"]), float(raw["baseline_figure"])
    else:
        name, _, baseline = name.rpartition(" vs ") if " vs " in name else (name, "", "")
        name = name.rstrip(" ,;:")
        baseline_figure = float(raw["baseline"])
    met = raw.get("met")
    return row(
        name,
        figure,
        str(raw.get("unit", "")),
        baseline=baseline or "baseline",
        baseline_figure=baseline_figure,
        target=str(raw.get("target") or ""),
        met=met if isinstance(met, bool) else None,
    )


@dataclass(slots=True)
class Outcome:
    """What one module gave: rows, or the traceback of its crash, and its duration."""

    module: str
    rows: list[Row] = field(default_factory=list)
    crash: str | None = None
    seconds: float = 0.0


def run_module(name: str, quick: bool) -> Outcome:
    outcome = Outcome(module=name)
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        run: Callable[[bool], Sequence[Mapping[str, Any]]] = module.run
        outcome.rows = [normalize(raw) for raw in run(quick)]
    except Exception:
        outcome.crash = traceback.format_exc()
        print(f"{name} crashed:\n{outcome.crash}", file=sys.stderr)
    outcome.seconds = time.perf_counter() - start
    print(f"  {name}: {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
    return outcome


# --- printing ----------------------------------------------------------------------------


def _cells(r: Row) -> tuple[str, ...]:
    met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
    return (
        r["name"],
        format_number(r["figure"]),
        r["unit"],
        r["baseline"],
        format_number(r["baseline_figure"]),
        "n/a" if math.isnan(r["ratio"]) else f"{format_number(r['ratio'])}x",
        r["target"],
        met,
    )


def print_table(outcomes: Sequence[Outcome]) -> None:
    lines: list[tuple[str, ...] | str] = []
    for outcome in outcomes:
        state = "CRASHED" if outcome.crash else f"{len(outcome.rows)} rows"
        lines.append(f"{outcome.module} ({outcome.seconds:.0f} s, {state})")
        lines.extend(_cells(r) for r in outcome.rows)
    cells = [line for line in lines if isinstance(line, tuple)]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    right = {1, 4, 5}

    def render(values: Sequence[str]) -> str:
        return " | ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    print(render(COLUMNS))
    print(rule)
    for line in lines:
        print(f"== {line}" if isinstance(line, str) else render(line))


def write_json(
    path: Path, info: Mapping[str, str], quick: bool, outcomes: Sequence[Outcome]
) -> None:
    document = {
        "machine": info,
        "quick": quick,
        "rows": [{"module": o.module, **r} for o in outcomes for r in o.rows],
        "modules": [
            {"module": o.module, "seconds": round(o.seconds, 1), "crash": o.crash} for o in outcomes
        ],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this module (repeatable)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    names = select(discover(), args.only)
    info = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    start = time.perf_counter()
    outcomes = [run_module(name, args.quick) for name in names]
    print()
    print_table(outcomes)
    print(f"\n{'quick' if args.quick else 'full'} run: {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        write_json(args.json, info, args.quick, outcomes)
    return 1 if any(o.crash for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
