"""Search latency, recall, filtered search, startup and peak memory per size.

For each size (``N`` chunks x ``D`` dimensions of random float32 vectors, in documents
of 100 chunks whose metadata ``group`` alternates 0/1) a database is built with direct
SQL inserts through :class:`SqliteStore`'s schema, then a *fresh subprocess* opens it
and measures, in this order (so its peak RSS is that of the store's search, before the
baseline's own copy of the vectors exists):

* startup: ``SqliteStore.open`` plus the first search (the memory index loads), and the
  longest the event loop went without running a 1 ms ticker task meanwhile (a web
  app's other requests wait that long);
* ``store.search`` k=10 (the query embedding excluded): p50/p95 over the queries;
* filtered: half the documents (metadata ``group = 0``) and 1% of them (by id);
* vec0's own KNN (``memory_index=False``), the path search took before;
* peak RSS (``VmHWM``) after those searches;
* the floor: an exact NumPy scan of the same vectors in memory (normalised matrix times
  query, then ``argpartition``), p50/p95, and recall@10 of the store against it.

``python -m benchmarks.bench_search`` runs it alone (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from asemantic.adapters.sqlite import SqliteStore
from asemantic.ports import SearchFilters
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._ready_db import build_ready_database

__all__ = ["run"]

_PER_DOC = 100
_K = 10


def _blocks(n: int, dims: int, seed: int, step: int = 20_000) -> Iterator[npt.NDArray[np.float32]]:
    """The benchmark's vectors, ``step`` rows at a time (the same rows every call)."""
    rng = np.random.default_rng(seed)
    for lo in range(0, n, step):
        yield rng.standard_normal((min(step, n - lo), dims), dtype=np.float32)


def _vectors(n: int, dims: int, seed: int) -> npt.NDArray[np.float32]:
    out = np.empty((n, dims), dtype=np.float32)
    lo = 0
    for block in _blocks(n, dims, seed):
        out[lo : lo + len(block)] = block
        lo += len(block)
    return out


# --- building a database -----------------------------------------------------------


def build(path: Path, n: int, dims: int, *, seed: int = 11) -> float:
    """A database of ``n`` READY chunks with random vectors; seconds taken."""
    return build_ready_database(
        path, n=n, dims=dims, blocks=_blocks(n, dims, seed), per_doc=_PER_DOC
    )


# --- measuring in a fresh process --------------------------------------------------


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _timed(store: SqliteStore, queries: Any, filters: SearchFilters | None) -> list[float]:
    times = []
    for query in queries:
        start = time.perf_counter()
        hits = await store.search(query.tobytes(), k=_K, filters=filters)
        times.append(time.perf_counter() - start)
        assert len(hits) == _K
    return times


async def _measure_store(path: Path, n: int, queries: Any) -> dict[str, Any]:
    docs = math.ceil(n / _PER_DOC)
    narrow = SearchFilters(document_ids=list(range(1, docs + 1, 100)))
    broad = SearchFilters(metadata={"group": 0})
    out: dict[str, Any] = {}
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    start = time.perf_counter()
    store = await SqliteStore.open(path)
    try:
        first = await store.search(queries[0].tobytes(), k=_K)
        out["startup"] = time.perf_counter() - start
        ticking.cancel()
        out["stall"] = max(gaps, default=0.0)
        out["plain"] = await _timed(store, queries, None)
        out["broad"] = await _timed(store, queries, broad)
        out["narrow"] = await _timed(store, queries, narrow)
        hits = []
        for query in queries:
            hits.append([h.chunk_id for h in await store.search(query.tobytes(), k=_K)])
        out["hits"] = hits
        out["broad_hits"] = [
            [h.chunk_id for h in await store.search(q.tobytes(), k=_K, filters=broad)]
            for q in queries[:10]
        ]
        assert first
    finally:
        await store.aclose()
    out["rss"] = _peak_mib()
    vec0 = await SqliteStore.open(path, memory_index=False)
    try:
        out["vec0"] = await _timed(vec0, queries[: max(3, min(10, 2_000_000 // n))], None)
    finally:
        await vec0.aclose()
    return out


def _floor(vectors: Any, queries: Any) -> tuple[list[float], list[list[int]], list[list[int]]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    times, exact = [], []
    for query in queries:
        start = time.perf_counter()
        scores = unit @ (query / np.linalg.norm(query))
        top = np.argpartition(-scores, _K)[:_K]
        top = top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - start)
        exact.append([int(i) + 1 for i in top])
    group0 = np.flatnonzero(((np.arange(len(unit)) // _PER_DOC + 1) % 2) == 0)
    broad = []
    for query in queries[:10]:
        scores = unit[group0] @ (query / np.linalg.norm(query))
        top = np.argsort(-scores)[:_K]
        broad.append([int(group0[i]) + 1 for i in top])
    return times, exact, broad


def _recall(found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]]) -> float:
    return statistics.mean(len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True))


def child(path: Path, n: int, dims: int, n_queries: int) -> dict[str, Any]:
    """Everything measured on one database, in this (fresh) process."""
    queries = np.random.default_rng(99).standard_normal((n_queries, dims), dtype=np.float32)
    with quiet():
        out = asyncio.run(_measure_store(path, n, queries))
    floor, exact, broad_exact = _floor(_vectors(n, dims, 11), queries)
    return {
        "startup_ms": out["startup"] * 1000,
        "stall_ms": out["stall"] * 1000,
        "p50": statistics.median(out["plain"]) * 1000,
        "p95": _pct(out["plain"], 0.95) * 1000,
        "broad_p50": statistics.median(out["broad"]) * 1000,
        "narrow_p50": statistics.median(out["narrow"]) * 1000,
        "vec0_p50": statistics.median(out["vec0"]) * 1000,
        "floor_p50": statistics.median(floor) * 1000,
        "floor_p95": _pct(floor, 0.95) * 1000,
        "recall": _recall(out["hits"], exact),
        "broad_recall": _recall(out["broad_hits"], broad_exact),
        "rss_mib": out["rss"],
        "matrix_mib": n * dims * 4 / 2**20,
    }


def _size_rows(label: str, m: dict[str, Any], build_s: float) -> list[Row]:
    p50, floor = m["p50"], m["floor_p50"]
    return [
        row(
            f"search p50 k=10, {label}",
            p50,
            "ms",
            baseline="exact NumPy scan p50",
            baseline_figure=floor,
            target="<= 2x NumPy",
            met=p50 <= 2 * floor,
        ),
        row(
            f"search p95 k=10, {label}",
            m["p95"],
            "ms",
            baseline="exact NumPy scan p95",
            baseline_figure=m["floor_p95"],
        ),
        row(
            f"recall@10 vs exact, {label}",
            m["recall"],
            "",
            baseline="exact NumPy",
            baseline_figure=1.0,
            target=">= 0.99",
            met=m["recall"] >= 0.99,
        ),
        row(
            f"filtered p50 (half the docs, metadata), {label}",
            m["broad_p50"],
            "ms",
            baseline="unfiltered p50",
            baseline_figure=p50,
            target="<= 2x unfiltered",
            met=m["broad_p50"] <= 2 * p50,
        ),
        row(
            f"filtered recall@10 (half the docs), {label}",
            m["broad_recall"],
            "",
            baseline="exact NumPy, filtered",
            baseline_figure=1.0,
            target=">= 0.99",
            met=m["broad_recall"] >= 0.99,
        ),
        row(
            f"filtered p50 (1% of docs, by id), {label}",
            m["narrow_p50"],
            "ms",
            baseline="unfiltered p50",
            baseline_figure=p50,
            target="<= 2x unfiltered",
            met=m["narrow_p50"] <= 2 * p50,
        ),
        row(
            f"vec0 KNN p50 (memory_index=False), {label}",
            m["vec0_p50"],
            "ms",
            baseline="exact NumPy scan p50",
            baseline_figure=floor,
        ),
        row(
            f"startup: open + first search, {label}",
            m["startup_ms"],
            "ms",
            baseline="vec0 KNN p50 (one query)",
            baseline_figure=m["vec0_p50"],
        ),
        row(
            f"longest event-loop stall during startup, {label}",
            m["stall_ms"],
            "ms",
            baseline="startup",
            baseline_figure=m["startup_ms"],
        ),
        row(
            f"peak RSS of search, {label}",
            m["rss_mib"],
            "MiB",
            baseline="float32 matrix alone",
            baseline_figure=m["matrix_mib"],
        ),
        row(
            f"build by direct SQL, {label}",
            build_s,
            "s",
            baseline="(informational)",
            baseline_figure=math.nan,
        ),
    ]


def measure(workdir: Path, n: int, dims: int, n_queries: int) -> list[Row]:
    path = workdir / f"search-{n}x{dims}.db"
    build_s = build(path, n, dims)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_search",
            "--child",
            str(path),
            str(n),
            str(dims),
            str(n_queries),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    path.unlink()
    return _size_rows(f"{n:,} x {dims}d", metrics, build_s)


def _sizes(quick: bool, rows: int | None = None) -> list[tuple[int, int, int]]:
    if rows is not None:
        return [(rows, 768, max(20, min(200, 20_000_000 // rows)))]
    if quick:
        return [(20_000, 768, 40)]
    return [(100_000, 768, 200), (100_000, 3072, 100), (1_000_000, 768, 50)]


def run(
    quick: bool, *, each: Callable[[list[Row]], None] | None = None, rows: int | None = None
) -> list[Row]:
    """Rows for every size (quick: 20,000 x 768 only; ``rows``: that many x 768 only);
    ``each`` sees each size's rows."""
    with tempfile.TemporaryDirectory(prefix="asemantic-search-") as tmp:
        out: list[Row] = []
        for n, dims, n_queries in _sizes(quick, rows):
            size_rows = measure(Path(tmp), n, dims, n_queries)
            if each is not None:
                each(size_rows)
            out.extend(size_rows)
        return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="search benchmark")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, metavar="N", help="one size only: N x 768d")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "N", "DIMS", "QUERIES"))
    args = parser.parse_args(argv)
    if args.child:
        path, n, dims, queries = args.child
        print(json.dumps(child(Path(path), int(n), int(dims), int(queries))))
        return

    def show(rows: list[Row]) -> None:
        print_rows(rows)
        sys.stdout.flush()

    run(args.quick, each=show, rows=args.rows)


if __name__ == "__main__":
    main()
