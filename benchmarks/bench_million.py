"""A million vectors: the pruned search and the index file against the exact scan.

One database of ``N`` READY chunks x 768d (1,000,000 by default; ``--quick``: 60,000),
in documents of 100 chunks whose metadata ``group`` alternates 0/1. Vectors are
clustered (64 random centres plus noise, unit length) as embeddings of real text are;
queries are perturbed copies of stored vectors. ``--kind gaussian`` uses i.i.d.
Gaussian vectors instead (no structure: the pruning bound cannot prune, so the search
falls back to the exact scan; it must stay exact).

The database is cached under the temporary directory (``--cache DIR``), keyed by size
and kind, because building a million vec0 rows takes minutes. Then, each in a *fresh
subprocess* (so each peak RSS is its own):

* ``old``: the store as it searched before: no index file (``index_file=False``) and
  no pruning bound: startup (open + first search), p50 of ``store.search`` k=10 unfiltered and
  filtered (half the documents by metadata), peak RSS (``VmHWM``);
* ``new``, twice: the first open writes the index file beside the database; the second
  (``warm``) opens it: the same figures, plus which searches were proved exact by the
  pruning bound and which fell back to the full scan;
* in the ``warm`` process, after its peak RSS is taken: the exact NumPy scan of the
  same vectors (one float32 matrix-vector product plus ``argpartition``), timed query
  by query alternately with the store's search (the ratio of their p50s is the headline
  figure: both ran on the same machine at the same moments), and recall@10 of every
  store search against it (unfiltered and filtered).

``python -m benchmarks.bench_million`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
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

from asemantic.adapters.sqlite import SqliteStore, memory_index
from asemantic.adapters.sqlite.index_file import index_path
from asemantic.ports import SearchFilters
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._ready_db import build_ready_database

__all__ = ["run"]

_PER_DOC = 100
_K = 10
_DIMS = 768
_STEP = 20_000
_BROAD = SearchFilters(metadata={"group": 0})

Vectors = npt.NDArray[np.float32]


def blocks(n: int, dims: int, kind: str) -> Iterator[Vectors]:
    """The benchmark's unit vectors, ``_STEP`` rows at a time (the same every call)."""
    centres = np.random.default_rng(7).standard_normal((64, dims), dtype=np.float32)
    for number, lo in enumerate(range(0, n, _STEP)):
        rng = np.random.default_rng(1000 + number)
        size = min(_STEP, n - lo)
        noise = rng.standard_normal((size, dims), dtype=np.float32)
        block = noise if kind == "gaussian" else centres[rng.integers(0, 64, size)] + 0.6 * noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        yield block


def vectors(n: int, dims: int, kind: str) -> Vectors:
    out = np.empty((n, dims), dtype=np.float32)
    lo = 0
    for block in blocks(n, dims, kind):
        out[lo : lo + len(block)] = block
        lo += len(block)
    return out


def queries(n: int, dims: int, kind: str, count: int) -> Vectors:
    """Perturbed copies of stored vectors (about cos 0.96 to the one they copy)."""
    rng = np.random.default_rng(11)
    picks = np.sort(rng.integers(0, n, count))
    chosen = np.empty((count, dims), dtype=np.float32)
    lo = 0
    for block in blocks(n, dims, kind):
        inside = (picks >= lo) & (picks < lo + len(block))
        chosen[inside] = block[picks[inside] - lo]
        lo += len(block)
    noisy = chosen + rng.standard_normal((count, dims), dtype=np.float32) * (0.3 / math.sqrt(dims))
    out: Vectors = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    return out


# --- building a database -----------------------------------------------------------


def build(path: Path, n: int, dims: int, kind: str) -> float:
    """A database of ``n`` READY chunks; seconds taken."""
    start = time.perf_counter()
    temp = path.with_name(path.name + ".building")
    temp.unlink(missing_ok=True)

    build_ready_database(temp, n=n, dims=dims, blocks=blocks(n, dims, kind), per_doc=_PER_DOC)
    for suffix in ("-wal", "-shm"):
        Path(str(temp) + suffix).unlink(missing_ok=True)
    os.replace(temp, path)
    return time.perf_counter() - start


def cached_database(cache: Path, n: int, dims: int, kind: str) -> tuple[Path, float]:
    """The cached database for ``(n, dims, kind)``, built if missing; build seconds
    (0 when it was cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"million-{kind}-{n}x{dims}.db"
    if path.exists():
        return path, 0.0
    return path, build(path, n, dims, kind)


# --- measuring in fresh processes --------------------------------------------------


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _peak_mib() -> float:
    return _status_mib("VmHWM")


async def _store_run(
    path: Path, qs: Vectors, *, index_file: bool, floor: tuple[int, str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = time.perf_counter()
    store = await SqliteStore.open(path, index_file=index_file)
    try:
        first = await store.search(qs[0].tobytes(), k=_K)
        out["startup"] = time.perf_counter() - start
        assert len(first) == _K
        index = store._index
        assert index is not None
        if index._writing is not None:  # the file written after a load from vec0
            write_start = time.perf_counter()
            await index._writing
            out["file_write"] = time.perf_counter() - write_start
        out["from_file"] = index.file_loads
        for name, filters in (("plain", None), ("broad", _BROAD)):
            times, hits = [], []
            for q in qs:
                begin = time.perf_counter()
                found = await store.search(q.tobytes(), k=_K, filters=filters)
                times.append(time.perf_counter() - begin)
                hits.append([h.chunk_id for h in found])
            out[name] = times
            out[f"{name}_hits"] = hits
        out["pruned"] = index._matrix.pruned_searches
        out["rss"] = _peak_mib()  # before the baseline's own copy of the vectors
        out["anon"] = _status_mib("RssAnon")  # of it now: private memory, the rest is
        out["file"] = _status_mib("RssFile")  # file pages the kernel may drop
        if floor is not None:
            out.update(await _interleaved(store, qs, *floor))
    finally:
        await store.aclose()
    return out


async def _interleaved(store: SqliteStore, qs: Vectors, n: int, kind: str) -> dict[str, Any]:
    """The exact NumPy scan of the same vectors (its hits are the truth), timed query
    by query alternately with the store's search, so both see the same machine."""
    unit = vectors(n, _DIMS, kind)
    group0 = np.flatnonzero(((np.arange(n) // _PER_DOC + 1) % 2) == 0)
    exact_times, store_times, exact_hits, broad_hits = [], [], [], []
    exact_broad_times, store_broad_times = [], []
    for q in qs:
        begin = time.perf_counter()
        scores = unit @ q
        top = np.argpartition(-scores, _K)[:_K]
        top = top[np.argsort(-scores[top])]
        exact_times.append(time.perf_counter() - begin)
        exact_hits.append([int(i) + 1 for i in top])
        begin = time.perf_counter()
        await store.search(q.tobytes(), k=_K)
        store_times.append(time.perf_counter() - begin)
        # The filtered floor: the same full scan, then the top k of the kept rows.
        begin = time.perf_counter()
        sub = (unit @ q)[group0]
        pick = np.argpartition(-sub, _K)[:_K]
        exact_broad_times.append(time.perf_counter() - begin)
        broad_hits.append([int(group0[i]) + 1 for i in pick])
        begin = time.perf_counter()
        await store.search(q.tobytes(), k=_K, filters=_BROAD)
        store_broad_times.append(time.perf_counter() - begin)
    return {
        "exact": exact_times,
        "interleaved": store_times,
        "exact_broad": exact_broad_times,
        "interleaved_broad": store_broad_times,
        "exact_hits": exact_hits,
        "exact_broad_hits": broad_hits,
    }


def child(mode: str, path: Path, n: int, kind: str, count: int) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``old``, ``new`` or ``warm`` (``new``
    plus the interleaved exact scan)."""
    qs = queries(n, _DIMS, kind, count)
    if mode == "old":  # the search as it was: no index file, no pruning bound
        memory_index.PRUNE_MIN_ROWS = sys.maxsize
    floor = (n, kind) if mode == "warm" else None
    with quiet():
        return asyncio.run(_store_run(path, qs, index_file=mode != "old", floor=floor))


def _spawn(mode: str, path: Path, n: int, kind: str, count: int) -> dict[str, Any]:
    args = [sys.executable, "-m", "benchmarks.bench_million", "--child", mode, str(path)]
    args += [str(n), kind, str(count)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _recall(found: Sequence[Sequence[int]], exact: Sequence[Sequence[int]]) -> float:
    return statistics.mean(len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True))


def _ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def measure(cache: Path, n: int, kind: str, count: int) -> list[Row]:
    path, build_s = cached_database(cache, n, _DIMS, kind)
    index_path(path).unlink(missing_ok=True)
    old = _spawn("old", path, n, kind, count)
    first = _spawn("new", path, n, kind, count)  # loads vec0, writes the file
    warm = _spawn("warm", path, n, kind, count)  # maps the file
    truth = {"plain_hits": warm["exact_hits"], "broad_hits": warm["exact_broad_hits"]}
    label = f"{n:,} x {_DIMS}d {kind}"
    exact = _ms(warm["exact"])
    new = _ms(warm["interleaved"])
    target = 0.25 if kind == "clustered" else 2.0
    rows = [
        row(
            f"pruned search p50 k=10, {label}",
            new,
            "ms",
            baseline="exact NumPy scan p50 (same process, alternating)",
            baseline_figure=exact,
            target=f"<= {target}x exact",
            met=new <= target * exact,
        ),
        row(
            f"search p50 before (no file, no bound), {label}",
            _ms(old["plain"]),
            "ms",
            baseline="pruned search p50 (its own process)",
            baseline_figure=_ms(warm["plain"]),
        ),
        row(
            f"pruned filtered p50 (half the docs), {label}",
            _ms(warm["interleaved_broad"]),
            "ms",
            baseline="exact NumPy scan of the kept rows p50 (same process, alternating)",
            baseline_figure=_ms(warm["exact_broad"]),
            target=f"<= {target}x exact",
            met=_ms(warm["interleaved_broad"]) <= target * _ms(warm["exact_broad"]),
        ),
        row(
            f"filtered p50 before (no file, no bound), {label}",
            _ms(old["broad"]),
            "ms",
            baseline="pruned filtered p50 (its own process)",
            baseline_figure=_ms(warm["broad"]),
        ),
        row(
            f"searches answered through the bound, {label}",
            warm["pruned"],
            "",
            baseline="searches",
            baseline_figure=2 * count,
        ),
    ]
    for name, result in (("pruned", warm), ("old path", old)):
        for what in ("plain", "broad"):
            recall = _recall(result[f"{what}_hits"], truth[f"{what}_hits"])
            rows.append(
                row(
                    f"recall@10 {name} {'unfiltered' if what == 'plain' else 'filtered'}, {label}",
                    recall,
                    "",
                    baseline="exact NumPy",
                    baseline_figure=1.0,
                    target=">= 0.99",
                    met=recall >= 0.99,
                )
            )
    rows += [
        row(
            f"startup from the index file: open + first search, {label}",
            warm["startup"] * 1000,
            "ms",
            baseline="startup before (loads vec0)",
            baseline_figure=old["startup"] * 1000,
            target="<= 3 s",
            met=warm["startup"] <= 3.0,
        ),
        row(
            f"startup writing the index file (first open), {label}",
            first["startup"] * 1000,
            "ms",
            baseline="startup before (loads vec0)",
            baseline_figure=old["startup"] * 1000,
        ),
        row(
            f"index file write (background, after the first search), {label}",
            first.get("file_write", 0.0) * 1000,
            "ms",
            baseline="startup before (loads vec0)",
            baseline_figure=old["startup"] * 1000,
        ),
        row(
            f"peak RSS from the index file, {label}",
            warm["rss"],
            "MiB",
            baseline="peak RSS before (loads vec0)",
            baseline_figure=old["rss"],
            target="<= old",
            met=warm["rss"] <= old["rss"],
        ),
        row(
            f"anonymous memory now (RssAnon) from the index file, {label}",
            warm["anon"],
            "MiB",
            baseline="RssAnon before (loads vec0)",
            baseline_figure=old["anon"],
        ),
        row(
            f"file-backed memory now (RssFile, reclaimable) from the index file, {label}",
            warm["file"],
            "MiB",
            baseline="RssFile before (loads vec0)",
            baseline_figure=old["file"],
        ),
        row(
            f"peak RSS of the first open (loads vec0, writes the file), {label}",
            first["rss"],
            "MiB",
            baseline="peak RSS before (loads vec0)",
            baseline_figure=old["rss"],
        ),
        row(
            f"build by direct SQL (0: cached), {label}",
            build_s,
            "s",
            baseline="(informational)",
            baseline_figure=math.nan,
        ),
    ]
    return rows


def run(
    quick: bool,
    *,
    each: Callable[[list[Row]], None] | None = None,
    rows: int | None = None,
    kinds: Sequence[str] = ("clustered",),
    cache: Path | None = None,
) -> list[Row]:
    """Rows for each kind of vectors (quick: 60,000 rows, in a temporary directory)."""
    n = rows if rows is not None else (60_000 if quick else 1_000_000)
    count = 20 if quick else 30
    with tempfile.TemporaryDirectory(prefix="asemantic-million-") as tmp:
        where = Path(tmp) if quick or cache is None else cache
        out: list[Row] = []
        for kind in kinds:
            size_rows = measure(where, n, kind, count)
            if each is not None:
                each(size_rows)
            out.extend(size_rows)
        return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a million vectors")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, metavar="N")
    parser.add_argument("--kind", action="append", choices=("clustered", "gaussian"))
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "asemantic-bench-million"
    )
    parser.add_argument("--child", nargs=5, metavar=("MODE", "PATH", "N", "KIND", "QUERIES"))
    args = parser.parse_args(argv)
    if args.child:
        mode, path, n, kind, count = args.child
        print(json.dumps(child(mode, Path(path), int(n), kind, int(count))))
        return

    def show(rows: list[Row]) -> None:
        print_rows(rows)
        sys.stdout.flush()

    run(args.quick, each=show, rows=args.rows, kinds=args.kind or ("clustered",), cache=args.cache)


if __name__ == "__main__":
    main()
