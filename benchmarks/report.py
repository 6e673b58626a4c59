"""``python -m benchmarks.report``: the README's headline table, from one run.

Runs, one after the other in this process (each module's own subprocesses included),
the benchmarks behind the headline figures, at full size (``--quick``: their small
sizes, a smoke run), then prints the machine and one Markdown table whose every row is
a figure next to its baseline measured in the same run, and the ratio between them:

* async ingestion through the CLI (MB/s) against its floor, and the splitter alone
  against a peer splitter (``semchunk`` when installed, else the same floor):
  :mod:`benchmarks.bench_ingest`;
* results applied end to end (file download to READY rows with vectors), 768 and
  3,072 dimensions, against the orjson + NumPy + ``executemany`` floor:
  :mod:`benchmarks.bench_pipeline`; the peak RSS of reading result files at two sizes
  (flat in the file's size): :mod:`benchmarks.bench_results`;
* search at a million vectors: p50 against the exact NumPy scan, recall@10 against it,
  startup (open + first search) and the search's peak RSS: ``bench_million`` when the
  project has it (it replaces the million-row size of :mod:`benchmarks.bench_search`),
  else ``bench_search`` at 1,000,000 x 768d only.

A row whose benchmark crashed or gave no such figure is listed as missing under the
table (the exit status is then 1); nothing is filled in by hand. ``--json PATH`` also
keeps the machine, every row of every module run and the table's rows.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.__main__ import machine, normalize
from benchmarks._common import Row, format_number

__all__ = ["ModuleRun", "Pick", "headline", "main", "markdown", "pick_rows", "plan"]


@dataclass(frozen=True, slots=True)
class Pick:
    """One headline row: the first row of ``module`` whose name matches a pattern."""

    label: str
    module: str
    patterns: tuple[str, ...]

    def find(self, rows: Sequence[Row]) -> Row | None:
        for pattern in self.patterns:
            compiled = re.compile(pattern)
            for r in rows:
                if compiled.search(r["name"]):
                    return r
        return None


def _search_picks(module: str) -> list[Pick]:
    if module == "bench_million":
        return [
            Pick("search p50 k=10", module, (r"^pruned search p50 k=10, ",)),
            Pick("recall@10 against the exact scan", module, (r"^recall@10 .*unfiltered, ",)),
            Pick(
                "startup (open + first search)",
                module,
                (r"^startup from the index file: open \+ first search, ",),
            ),
            Pick("peak RSS of search", module, (r"^peak RSS from the index file, ",)),
        ]
    return [
        Pick("search p50 k=10", module, (r"^search p50 k=10, ",)),
        Pick("recall@10 against the exact scan", module, (r"^recall@10 vs exact, ",)),
        Pick(
            "startup (open + first search)",
            module,
            (r"^startup: open \+ first search, ",),
        ),
        Pick("peak RSS of search", module, (r"^peak RSS of search, ",)),
    ]


def search_module() -> str:
    """``bench_million`` when the project has it, else ``bench_search``."""
    found = importlib.util.find_spec("benchmarks.bench_million") is not None
    return "bench_million" if found else "bench_search"


def headline(search: str) -> list[Pick]:
    """The headline rows, in the table's order."""
    return [
        Pick(
            "async ingest through the CLI",
            "bench_ingest",
            (r"^ingest --mode async through the CLI",),
        ),
        Pick("splitter alone", "bench_ingest", (r"^split only, ",)),
        Pick(
            "results applied end to end, 768d",
            "bench_pipeline",
            (r"^sync_status applies .* x 768d",),
        ),
        Pick(
            "results applied end to end, 3,072d",
            "bench_pipeline",
            (r"^sync_status applies .* x 3072d",),
        ),
        Pick(
            "peak RSS reading a result file (file on disk)",
            "bench_results",
            (r"^iter_result_slices peak RSS",),
        ),
        Pick(
            "peak RSS downloading and reading a result file",
            "bench_results",
            (r"^retrieve_results loopback HTTP peak RSS",),
        ),
        *_search_picks(search),
    ]


def plan(picks: Sequence[Pick]) -> list[str]:
    """The modules to run, each once, in the order the picks first name them."""
    return list(dict.fromkeys(p.module for p in picks))


def _runner(module: str, quick: bool) -> Callable[[], Sequence[Mapping[str, Any]]]:
    loaded = importlib.import_module(f"benchmarks.{module}")
    run: Callable[..., Sequence[Mapping[str, Any]]] = loaded.run
    if module == "bench_search" and not quick:
        return lambda: run(False, rows=1_000_000)  # the million-row size alone
    return lambda: run(quick)


@dataclass(slots=True)
class ModuleRun:
    """One module's rows, or the traceback of its crash, and how long it took."""

    module: str
    rows: list[Row] = field(default_factory=list)
    crash: str | None = None
    seconds: float = 0.0


def run_modules(modules: Sequence[str], quick: bool) -> list[ModuleRun]:
    runs = []
    for module in modules:
        outcome = ModuleRun(module=module)
        start = time.perf_counter()
        print(f"  running {module} ...", file=sys.stderr, flush=True)
        try:
            outcome.rows = [normalize(raw) for raw in _runner(module, quick)()]
        except Exception:
            outcome.crash = traceback.format_exc()
            print(f"{module} crashed:\n{outcome.crash}", file=sys.stderr)
        outcome.seconds = time.perf_counter() - start
        print(f"  {module}: {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
        runs.append(outcome)
    return runs


def pick_rows(
    picks: Sequence[Pick], runs: Sequence[ModuleRun]
) -> tuple[list[tuple[Pick, Row]], list[str]]:
    """The headline rows found, and a reason for each one that is missing."""
    by_module = {r.module: r for r in runs}
    found: list[tuple[Pick, Row]] = []
    missing: list[str] = []
    for pick in picks:
        outcome = by_module.get(pick.module)
        if outcome is None:
            missing.append(f"{pick.label}: {pick.module} was not run")
        elif outcome.crash is not None:
            missing.append(f"{pick.label}: {pick.module} crashed")
        elif (hit := pick.find(outcome.rows)) is None:
            missing.append(f"{pick.label}: {pick.module} gave no such row")
        else:
            found.append((pick, hit))
    return found, missing


def _figure(value: float, unit: str) -> str:
    text = format_number(value)
    return f"{text} {unit}".strip() if unit else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(found: Sequence[tuple[Pick, Row]]) -> str:
    """The table: figure, baseline and its figure (same run), ratio, target and met."""
    lines = [
        "| figure | asemantic | baseline (same run) | baseline figure | ratio | target |",
        "|---|---:|---|---:|---:|---|",
    ]
    for pick, r in found:
        ratio = "n/a" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"
        target = r["target"]
        if target and r["met"] is not None:
            target += ", met" if r["met"] else ", not met"
        cells = (
            f"{pick.label} ({r['name']})",
            _figure(r["figure"], r["unit"]),
            r["baseline"],
            _figure(r["baseline_figure"], r["unit"]),
            ratio,
            target or "reported",
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    picks = headline(search_module())
    info = machine()
    start = time.perf_counter()
    runs = run_modules(plan(picks), args.quick)
    total = time.perf_counter() - start
    found, missing = pick_rows(picks, runs)
    size = "quick" if args.quick else "full"
    print(f"{size} run, {total:.0f} s; " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print()
    print(markdown(found))
    for reason in missing:
        print(f"\nmissing: {reason}")
    if args.json is not None:
        document = {
            "machine": info,
            "quick": args.quick,
            "seconds": round(total, 1),
            "table": [{"label": p.label, "module": p.module, **r} for p, r in found],
            "missing": missing,
            "modules": [
                {
                    "module": m.module,
                    "seconds": round(m.seconds, 1),
                    "crash": m.crash,
                    "rows": m.rows,
                }
                for m in runs
            ],
        }
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
