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
    "bench_ingest",
    "bench_million",
    "bench_pipeline",
    "bench_postgres",
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
        "pruned search p50",
        "startup from the index file",
    ):
        assert needed in names, needed
    assert document.get("machine")
