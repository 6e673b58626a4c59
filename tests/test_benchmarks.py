"""The benchmark runner keeps running: ``python -m benchmarks --quick`` in a subprocess.

Nothing here is about speed (figures on a shared machine are not pass/fail). It checks
that every module runs to the end, and that each row has a finite figure, a baseline
measured in the same run and the ratio between them, as the README's table needs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = {
    "bench_emulator",
    "bench_hybrid",
    "bench_ingest",
    "bench_migration",
    "bench_million",
    "bench_pipeline",
    "bench_postgres",
    "bench_quality",
    "bench_results",
    "bench_search",
    "bench_store",
}


@pytest.mark.timeout(900)
def test_quick_benchmark_run_yields_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["quick"] is True
    assert {m["module"] for m in document["modules"]} == MODULES
    assert all(m["crash"] is None for m in document["modules"]), document["modules"]
    rows = document["rows"]
    assert {row["module"] for row in rows} == MODULES
    for row in rows:
        assert row["name"] and row["baseline"], row
        assert math.isfinite(row["figure"]) and row["figure"] >= 0, row
        if isinstance(row["baseline_figure"], float) and math.isfinite(row["baseline_figure"]):
            expected = row["figure"] / row["baseline_figure"] if row["baseline_figure"] else None
            if expected is not None:
                assert row["ratio"] == pytest.approx(expected), row
    names = " ".join(row["name"] for row in rows)
    for needed in (
        "search p50",
        "recall@10",
        "filtered p50",
        "startup",
        "peak RSS",
        "applies",
        "poll pass",
        "iter_result_slices",
        "ingest",
        "bulk_update_vectors",
        "through the CLI",
        "split only",
        "HNSW build",
        "quality recall@10",
        "quality MRR",
        "hybrid search p50",
        "async ingest with keyword index",
        "during a migration backfill",
        "pruned search p50",
        "startup from the index file",
    ):
        assert needed in names, needed
    assert document.get("machine")


def test_report_picks_each_headline_row_from_its_module_and_says_what_is_missing() -> None:
    from benchmarks._common import row
    from benchmarks.report import ModuleRun, headline, markdown, pick_rows, plan

    picks = headline("bench_search")
    assert plan(picks) == ["bench_ingest", "bench_pipeline", "bench_results", "bench_search"]
    applied = row(
        "sync_status applies 10,000 results x 768d (file -> READY rows)",
        8_000.0,
        "vectors/s",
        baseline="orjson + NumPy + sqlite3 executemany",
        baseline_figure=10_000.0,
        target=">= 10,000 vectors/s",
        met=False,
    )
    other = row(
        "sync_status applies 5,000 results x 3072d",
        1.0,
        "vectors/s",
        baseline="floor",
        baseline_figure=2.0,
    )
    runs = [
        ModuleRun(module="bench_pipeline", rows=[other, applied]),
        ModuleRun(module="bench_ingest", crash="Traceback ..."),
        ModuleRun(module="bench_search", rows=[]),
    ]
    found, missing = pick_rows(picks, runs)
    labels = {pick.label: r for pick, r in found}
    assert labels["results applied end to end, 768d"] is applied
    assert labels["results applied end to end, 3,072d"] is other
    assert len(found) == 2
    assert "async ingest through the CLI: bench_ingest crashed" in missing
    assert "peak RSS reading a result file (file on disk): bench_results was not run" in missing
    assert "search p50 k=10: bench_search gave no such row" in missing
    table = markdown(found).splitlines()
    assert table[0].startswith("| figure | asemantic | baseline (same run)")
    assert (
        "| 8,000 vectors/s | orjson + NumPy + sqlite3 executemany | 10,000 vectors/s | 0.80x |"
        in table[2]
    )
    assert table[2].endswith("| >= 10,000 vectors/s, not met |")
    assert table[3].endswith("| 0.50x | reported |")
