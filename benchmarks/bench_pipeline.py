"""Batch pipeline benchmarks, each figure next to a baseline measured in the same run.

Run ``python -m benchmarks.bench_pipeline`` (``--quick`` for a short run).

1. One poll pass, ``core.batch_manager.sync_status()``, over 50 active jobs (20 with
   ``--quick``) while the emulator holds every ``batches.get`` for 200 ms, against the
   same calls made one after the other (``GeminiBatchClient.get_job_status`` in a
   loop). Twice: over loopback HTTP, to ``emulator.serve()`` running in its own process
   (:mod:`benchmarks._emuserver`; served from this process, its handler threads would
   compete with the client for the GIL), whose thread per connection does not cap
   concurrency; and through the in-process transport (no HTTP at all). Figures: the
   median of 5 passes (3 with ``--quick``); the sequential run is made once, and one
   call's latency is the median of its calls. Target: the pass takes at most 1.5x one
   call's latency.
2. Results applied end to end: ``sync_status()`` on a SUCCEEDED job of 10,000 chunks
   at 768 dimensions and 5,000 at 3,072 (2,000 and 1,000 with ``--quick``; the
   emulator's run of a 3,072-dimension job is the slowest part of the setup), from the
   download of the result file to READY rows with vectors, against the floor of the raw
   steps: the same file parsed by ``orjson``, packed by NumPy and ``executemany``'d by
   stdlib ``sqlite3`` into a ``(id INTEGER PRIMARY KEY, v BLOB)`` table, in one
   transaction.
   In-process emulator, with dense Gemini-like vectors (:mod:`benchmarks._emulated`).
   Setup (PENDING chunks, the job, the emulator's run) is not timed; each repeat starts
   from a copy of the same database. Target at 768 dimensions: 10,000 vectors/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

from asemantic import CoreConfig, GeminiSettings, SemanticCore
from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.adapters.sqlite.connection import DEFAULT_CACHE_KIB
from asemantic.domain.documents import ChunkDraft, Document
from asemantic.domain.jobs import JobStatus
from asemantic.domain.linekeys import line_key
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import DocumentWrite
from asemantic.testing.emulator import Fault, GeminiEmulator
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._emulated import (
    FAST_RETRY,
    DenseResults,
    dense_result_file,
    keyring,
    settings,
)
from benchmarks._emuserver import EmulatorProcess

__all__ = ["main", "run"]

LATENCY = 0.2
APPLY_TARGET = 10_000.0


@dataclass(frozen=True, slots=True)
class Sizes:
    jobs: int
    poll_repeats: int
    chunks: dict[int, int]
    apply_repeats: int


def sizes_for(quick: bool) -> Sizes:
    if quick:
        return Sizes(jobs=20, poll_repeats=3, chunks={768: 2_000, 3072: 1_000}, apply_repeats=2)
    return Sizes(jobs=50, poll_repeats=5, chunks={768: 10_000, 3072: 5_000}, apply_repeats=3)


def documents(n_docs: int, per_doc: int, *, words: int = 40) -> list[DocumentWrite]:
    """Documents of distinct ~300-character chunks, all to be embedded later."""
    writes = []
    for d in range(n_docs):
        drafts = []
        for p in range(per_doc):
            text = " ".join(f"w{d}x{p}y{j}" for j in range(words))
            source = f"Doc {d}\n\n{text}"
            drafts.append(
                ChunkDraft(
                    position=p,
                    text=text,
                    heading_path=(),
                    vector_source=source,
                    content_hash=hashlib.sha256(source.encode()).hexdigest(),
                    token_estimate=len(source) // 4,
                )
            )
        document = Document(text="", source=f"doc-{d}", title=f"Doc {d}")
        writes.append(DocumentWrite(document=document, content_hash=f"h{d}", drafts=drafts))
    return writes


async def open_core(path: Path, dims: int, gemini: GeminiSettings) -> SemanticCore:
    config = CoreConfig(space=EmbeddingSpace(dimensions=dims))
    return await SemanticCore.open(path, keys=keyring(), config=config, gemini=gemini)


# --- 1. one poll pass --------------------------------------------------------------------


class Steering(Protocol):
    """Scripts latency on the emulator, wherever it runs, and reads its request log."""

    def hold(self, endpoint: str, seconds: float, times: int) -> None: ...

    def peak(self, endpoint: str) -> int: ...


class InProcess:
    def __init__(self, emulator: GeminiEmulator) -> None:
        self.emulator = emulator

    def hold(self, endpoint: str, seconds: float, times: int) -> None:
        self.emulator.faults.clear()
        self.emulator.clear_requests()
        self.emulator.faults.add(Fault(endpoint=endpoint, latency=seconds, times=times))

    def peak(self, endpoint: str) -> int:
        return self.emulator.peak_in_flight(endpoint)


class OtherProcess:
    def __init__(self, process: EmulatorProcess) -> None:
        self.process = process

    def hold(self, endpoint: str, seconds: float, times: int) -> None:
        self.process.command("latency", endpoint, seconds, times)

    def peak(self, endpoint: str) -> int:
        return int(self.process.command("peak", endpoint))


async def submit_jobs(core: SemanticCore, n_jobs: int) -> list[str]:
    """``n_jobs`` submitted jobs of one chunk each; their remote names."""
    for write in documents(n_jobs, 1, words=5):
        await core.store.write_document(write)
    await core.batch_manager.flush_queue(min_size=1, max_size=1, force=True)
    records = await core.batch_jobs.jobs((JobStatus.SUBMITTED,))
    if len(records) != n_jobs:
        raise RuntimeError(f"{len(records)} of {n_jobs} jobs were submitted")
    return [str(record.remote_name) for record in records]


async def time_pass(core: SemanticCore, steering: Steering, n_jobs: int) -> tuple[float, int]:
    """Seconds of one ``sync_status`` pass under latency, and the peak in flight."""
    steering.hold("batches.get", LATENCY, n_jobs)
    start = time.perf_counter()
    report = await core.batch_manager.sync_status()
    elapsed = time.perf_counter() - start
    if report.polled != n_jobs or report.errors:
        raise RuntimeError(f"poll pass: {report.polled} polled, errors {report.errors}")
    return elapsed, steering.peak("batches.get")


async def time_sequential(
    client: GeminiBatchClient, steering: Steering, names: Sequence[str]
) -> list[float]:
    """Seconds of each call, made one after the other."""
    steering.hold("batches.get", LATENCY, len(names))
    calls = []
    for name in names:
        start = time.perf_counter()
        await client.get_job_status(name)
        calls.append(time.perf_counter() - start)
    return calls


@dataclass(frozen=True, slots=True)
class PollTimes:
    concurrent: float
    sequential: float
    one_call: float
    peak_in_flight: int


async def measure_poll(
    path: Path, gemini: GeminiSettings, steering: Steering, sizes: Sizes
) -> PollTimes:
    core = await open_core(path, 768, gemini)
    client = GeminiBatchClient(
        keyring(),
        space=core.space,
        base_url=gemini.base_url,
        transport=gemini.transport,
        retry=FAST_RETRY,
    )
    try:
        names = await submit_jobs(core, sizes.jobs)
        await core.batch_manager.sync_status()  # warm-up: connections, SDK client
        await client.get_job_status(names[0])
        passes = [await time_pass(core, steering, sizes.jobs) for _ in range(sizes.poll_repeats)]
        calls = await time_sequential(client, steering, names)
    finally:
        await client.aclose()
        await core.aclose()
    return PollTimes(
        concurrent=statistics.median(p[0] for p in passes),
        sequential=sum(calls),
        one_call=statistics.median(calls),
        peak_in_flight=min(p[1] for p in passes),
    )


def poll_row(times: PollTimes, n_jobs: int, where: str) -> Row:
    one_call = times.one_call
    return row(
        f"sync_status poll pass, {n_jobs} jobs, {LATENCY * 1000:.0f} ms batches.get "
        f"({where}, {times.peak_in_flight} in flight)",
        times.concurrent,
        "s",
        baseline=f"{n_jobs} get_job_status in sequence",
        baseline_figure=times.sequential,
        target=f"<= 1.5x one call ({one_call:.3f} s)",
        met=times.concurrent <= 1.5 * one_call,
    )


async def poll_rows(workdir: Path, sizes: Sizes) -> list[Row]:
    with EmulatorProcess() as process:
        gemini = settings(process.base_url)
        loopback = await measure_poll(
            workdir / "poll-http.db", gemini, OtherProcess(process), sizes
        )
    emulator = GeminiEmulator()
    gemini = settings(emulator.base_url, emulator.async_transport())
    local = await measure_poll(workdir / "poll-local.db", gemini, InProcess(emulator), sizes)
    return [
        poll_row(loopback, sizes.jobs, "loopback HTTP"),
        poll_row(local, sizes.jobs, "in-process transport"),
    ]


# --- 2. results applied end to end -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplySetup:
    dims: int
    chunks: int
    emulator: GeminiEmulator
    gemini: GeminiSettings
    snapshot: Path
    results: Path
    job_id: str


async def prepare_apply(workdir: Path, dims: int, chunks: int) -> ApplySetup:
    """A database whose ``chunks`` PENDING chunks sit in one SUCCEEDED job."""
    emulator = GeminiEmulator()
    transport = DenseResults(emulator)
    gemini = settings(emulator.base_url, transport)
    snapshot = workdir / f"apply-{dims}.db"
    core = await open_core(snapshot, dims, gemini)
    try:
        for write in documents(max(1, chunks // 100), min(chunks, 100)):
            await core.store.write_document(write)
        [job_id] = await core.batch_manager.flush_queue(force=True, max_size=chunks)
        keys = [
            line_key(c.chunk_id, c.content_hash) for c in await core.batch_jobs.job_chunks(job_id)
        ]
    finally:
        await core.aclose()
    emulator.complete_all()
    [batch] = emulator.batches
    if batch.output_file is None:
        raise RuntimeError(f"the emulator job ended {batch.state}")
    body = dense_result_file(keys, dims, seed=dims)
    transport.register(batch.output_file, body)
    results = workdir / f"results-{dims}.jsonl"
    results.write_bytes(body)
    return ApplySetup(
        dims=dims,
        chunks=len(keys),
        emulator=emulator,
        gemini=gemini,
        snapshot=snapshot,
        results=results,
        job_id=job_id,
    )


def copy_database(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        part = source.with_name(source.name + suffix)
        if part.exists():
            shutil.copyfile(part, target.with_name(target.name + suffix))


async def time_apply(setup: ApplySetup, path: Path) -> float:
    """One ``sync_status`` that downloads, parses and applies the whole job."""
    copy_database(setup.snapshot, path)
    core = await open_core(path, setup.dims, setup.gemini)
    try:
        manager = core.batch_manager
        await manager.reconcile()  # warm-up: builds the backend and the SDK client
        setup.emulator.faults.clear()
        # Cleanup is refused (the result file's delete is logged and skipped, the
        # batch's raises and is caught by the manager), so the remote job and its file
        # stay for the next repeat; this costs a few calls.
        for endpoint in ("files.delete", "batches.delete"):
            setup.emulator.faults.add(Fault(endpoint=endpoint, status=400, times=10))
        start = time.perf_counter()
        report = await manager.sync_status()
        elapsed = time.perf_counter() - start
        ready = (await core.store.count_chunks_by_status())["READY"]
    finally:
        await core.aclose()
    if report.completed != [setup.job_id] or ready != setup.chunks:
        raise RuntimeError(f"apply: completed {report.completed}, {ready} READY")
    return elapsed


def time_floor(results: Path, path: Path) -> float:
    """orjson parse, NumPy pack and one ``executemany`` into a plain blob table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{DEFAULT_CACHE_KIB}")
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        start = time.perf_counter()
        with results.open("rb") as stream:
            parsed = map(orjson.loads, stream)
            rows = (
                (
                    int(line["key"].split("-", 1)[0]),
                    np.asarray(line["response"]["embedding"]["values"], dtype="<f4").tobytes(),
                )
                for line in parsed
            )
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO blobs (id, v) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


async def apply_row(workdir: Path, dims: int, sizes: Sizes) -> Row:
    setup = await prepare_apply(workdir, dims, sizes.chunks[dims])
    store_runs, floor_runs = [], []
    for r in range(sizes.apply_repeats):  # interleaved, so both see the same machine load
        store_runs.append(await time_apply(setup, workdir / f"apply-{dims}-{r}.db"))
        floor_runs.append(time_floor(setup.results, workdir / f"floor-{dims}-{r}.db"))
    figure = setup.chunks / statistics.median(store_runs)
    has_target = dims == 768
    return row(
        f"sync_status applies {setup.chunks:,} results x {dims}d (file -> READY rows)",
        figure,
        "vectors/s",
        baseline="orjson + NumPy + sqlite3 executemany",
        baseline_figure=setup.chunks / statistics.median(floor_runs),
        target=f">= {APPLY_TARGET:,.0f} vectors/s" if has_target else "",
        met=figure >= APPLY_TARGET if has_target else None,
    )


# --- running -----------------------------------------------------------------------------


async def run_all(workdir: Path, sizes: Sizes) -> list[Row]:
    rows = await poll_rows(workdir, sizes)
    for dims in (768, 3072):
        rows.append(await apply_row(workdir, dims, sizes))
    return rows


def run(quick: bool) -> list[Row]:
    """Every benchmark of this module, as rows (see :mod:`benchmarks._common`)."""
    with quiet(), tempfile.TemporaryDirectory(prefix="asemantic-bench-") as tmp:
        return asyncio.run(run_all(Path(tmp), sizes_for(quick)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller, faster run")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))


if __name__ == "__main__":
    main()
