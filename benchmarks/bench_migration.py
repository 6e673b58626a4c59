"""Search latency while a migration to another embedding space backfills.

A SQLite knowledge base of ``N`` chunks (768 dimensions, ingested in sync mode with the
local lexical embedder) is migrated to 1536 dimensions: ``space_migrate`` queues every
chunk and a :class:`~asemantic.BatchSupervisor` in the same process embeds them through
the Batch API of the emulator, served from its own process over loopback (as Google
would be: its embedding work does not share this interpreter). Its jobs finish in tens
of milliseconds, so the supervisor writes results as fast as it can: a worst case for
the searches beside it, which share the supervisor's event loop and interpreter.

Measured in the same run, with the same query vectors:

* baseline: ``store.search`` k=10 p50 (the query embedding excluded) with nothing else
  running, in two windows, before the backfill and after it (the pooled median: a
  drift of the machine during the run falls on both sides);
* during the backfill: the same searches while the supervisor submits, polls and
  applies (only searches that started and ended while space 2 was still building);
* the backfill's throughput (chunks per second) for scale.

Three placements:

* **supervisor in another process, own CPU** (``asemantic supervise``, the deployment a
  service should use): on Linux with two CPUs or more the searching process is pinned
  to one CPU and the supervisor and the emulator to the others. The emulator stands in
  for Google, whose embedding work never runs on the service's machine; what remains
  is what the backfill does to searches through the database (locks, the WAL, the page
  cache, memory bandwidth). This is the row with the "about the same" target.
* **supervisor in another process, shared CPUs**: the same, unpinned, so the searches
  also wait for CPU time behind the supervisor and the emulator (on a two-core machine
  with three busy processes, every hand-off to aiosqlite's thread can wait a
  scheduler slice): what a small machine running all three sees.
* **supervisor in-process**: sharing the searches' event loop, its SDK calls and result
  parsing delay them.

NumPy's OpenBLAS starts a worker thread per CPU at import, and its matrix-vector
product (the exact scan of a search) runs on all of them from a few thousand rows on.
The pinning above binds the searching process's own threads, not those: while the
supervisor and the emulator keep the other CPU busy, each search waits for a BLAS
thread behind them. Run with ``OPENBLAS_NUM_THREADS=1`` to see searches without that
wait (the advice for a service on a shared machine, in the README).

``python -m benchmarks.bench_migration`` runs it alone (``--quick`` for a small size).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asemantic import BatchSupervisor, CoreConfig, GeminiSettings, GoogleKeyring, SemanticCore
from asemantic.batch.supervisor import SupervisorConfig
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.domain.spaces import SpaceState
from asemantic.testing import LexicalEmbedder
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._emuserver import EmulatorProcess

__all__ = ["run"]

OLD = EmbeddingSpace(dimensions=768)
NEW = EmbeddingSpace(dimensions=1536)
_PER_DOC = 20
_K = 10
_WORDS = ("invoice", "refund", "vacation", "certificate", "outage", "onboarding", "policy")


def _document(index: int) -> str:
    topic = _WORDS[index % len(_WORDS)]
    sections = [
        f"## Part {j}\n\n{topic} {' '.join(f'w{index}x{j}y{k}' for k in range(30))}"
        for j in range(_PER_DOC)
    ]
    return f"# {topic.title()} {index}\n\n" + "\n\n".join(sections) + "\n"


def _queries(count: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        vector = rng.standard_normal(OLD.dimensions).astype(np.float32)
        out.append((vector / np.linalg.norm(vector)).astype("<f4").tobytes())
    return out


async def _search_once(core: SemanticCore, query: bytes) -> float:
    start = time.perf_counter()
    await core.store.search(query, k=_K)
    return time.perf_counter() - start


@dataclass(frozen=True, slots=True, kw_only=True)
class _Figures:
    baseline: float
    during: float
    rate: float
    searches: int


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where the supervisor runs, and the CPUs of the searches and of the others."""

    name: str
    separate: bool
    searches_on: frozenset[int] | None = None
    others_on: frozenset[int] | None = None


def _placements() -> list[_Placement]:
    placements = [_Placement("supervisor in another process, shared CPUs", separate=True)]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        placements.insert(
            0,
            _Placement(
                "supervisor in another process, own CPU",
                separate=True,
                searches_on=frozenset(cpus[:1]),
                others_on=frozenset(cpus[1:]),
            ),
        )
    placements.append(_Placement("supervisor in-process", separate=False))
    return placements


def _place(pid: int, cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


async def _measure(chunks: int, searches: int, placement: _Placement) -> _Figures:
    everywhere = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with EmulatorProcess(fast_jobs=True) as emulator:
        _place(emulator.pid, placement.others_on)
        _place(0, placement.searches_on)
        try:
            return await _measure_against(emulator.base_url, chunks, searches, placement)
        finally:
            if placement.searches_on is not None and everywhere is not None:
                os.sched_setaffinity(0, everywhere)


def _supervise_elsewhere(
    db: Path, base_url: str, cpus: frozenset[int] | None
) -> subprocess.Popen[bytes]:
    """``asemantic supervise --until-idle`` in its own process (the deployment the
    README recommends for a service), on ``cpus`` when given."""
    env = {
        **os.environ,
        "GEMINI_API_KEY": "bench-default-key-0001",
        "GEMINI_BATCH_API_KEY": "bench-batch-key-0002",
    }
    argv = [sys.executable, "-m", "asemantic.cli", "--db", str(db), "--base-url", base_url]
    argv += ["supervise", "--until-idle", "--poll-interval", "0.1", "--min-batch-size", "1"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _place(process.pid, cpus)
    return process


async def _building(core: SemanticCore) -> bool:
    return (await core.space_status())[1].state is SpaceState.BUILDING


async def _search_while(
    core: SemanticCore, queries: list[bytes], process: subprocess.Popen[bytes] | None = None
) -> list[float]:
    """Search times of the searches that ran while space 2 was building."""
    during: list[float] = []
    while await _building(core):
        if process is not None and process.poll() is not None and await _building(core):
            raise RuntimeError(f"the supervisor process exited ({process.returncode}) early")
        for query in queries:
            took = await _search_once(core, query)
            if not await _building(core):
                break
            during.append(took)
            await asyncio.sleep(0.002)
    return during


async def _measure_against(
    base_url: str, chunks: int, searches: int, placement: _Placement
) -> _Figures:
    keys = GoogleKeyring("bench-default-key-0001", batch_key="bench-batch-key-0002")
    settings = GeminiSettings(
        base_url=base_url,
        retry=RetryConfig(attempts=3, initial_delay=0.001, max_delay=0.01, timeout=30.0),
    )
    with tempfile.TemporaryDirectory(prefix="asemantic-bench-") as folder:
        core = await SemanticCore.open(
            Path(folder) / "kb.db",
            keys=keys,
            embedder=LexicalEmbedder(OLD),
            config=CoreConfig(space=OLD),
            gemini=settings,
        )
        try:
            for index in range(max(1, chunks // _PER_DOC)):
                await core.ingest(_document(index), source=f"doc-{index}", mode="sync")
            queries = _queries(searches)
            for query in queries[:10]:  # warm: the memory index loads
                await _search_once(core, query)
            baseline = [await _search_once(core, q) for q in queries]

            await core.space_migrate(NEW)
            total = (await core.space_status())[1].record.progress.total
            config = SupervisorConfig(
                poll_interval=0.01, jitter=0.1, min_batch_size=1, max_wait=0.0, lease_ttl=30.0
            )
            started = time.perf_counter()
            if placement.separate:
                process = _supervise_elsewhere(
                    Path(folder) / "kb.db", base_url, placement.others_on
                )
                try:
                    during = await _search_while(core, queries, process)
                finally:
                    await asyncio.to_thread(process.wait, 300)
            else:
                async with BatchSupervisor(core, config) as supervisor:
                    supervisor.wake()
                    during = await _search_while(core, queries)
            elapsed = time.perf_counter() - started
            baseline += [await _search_once(core, q) for q in queries]
        finally:
            await core.aclose()
    return _Figures(
        baseline=statistics.median(baseline),
        during=statistics.median(during) if during else float("nan"),
        rate=total / elapsed,
        searches=len(during),
    )


def run(quick: bool) -> list[Row]:
    """The rows of this module (see :mod:`benchmarks._common`)."""
    chunks, searches = (400, 60) if quick else (4_000, 200)
    rows: list[Row] = []
    with quiet():
        for placement in _placements():
            got = asyncio.run(_measure(chunks, searches, placement))
            own_cpu = placement.searches_on is not None
            rows.append(
                row(
                    f"search p50 during a migration backfill, {placement.name} "
                    f"({chunks:,} chunks, 768d active, {got.searches} searches)",
                    got.during * 1000,
                    "ms",
                    baseline="search p50 with no backfill, same run",
                    baseline_figure=got.baseline * 1000,
                    target="about the same (x1)" if own_cpu else "",
                )
            )
            rows.append(
                row(
                    f"migration backfill 768d -> 1536d, {placement.name} ({chunks:,} chunks)",
                    got.rate,
                    "chunks/s",
                    baseline="chunks migrated",
                    baseline_figure=float(chunks),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print_rows(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
