"""Reading batch result files, each figure next to a baseline measured in the same run.

Run ``python -m benchmarks.bench_results`` (``--quick`` for a short run). Result files
hold dense float32 vectors as Gemini sends them (see :mod:`benchmarks._emulated`):
10,000 lines at 768 and 3,072 dimensions (1,000 with ``--quick``). Figures are
medians of 3 repeats (2 with ``--quick``).

1. :func:`~asemantic.adapters.gemini.results.iter_result_slices` on a file on disk, in
   lines/s, against the naive way (stdlib ``json.loads`` per line, ``struct.pack`` of
   every float; target: at least 4x) and against a floor (``orjson.loads`` and
   ``struct.pack``, no checks; informational). The two baselines read at most the
   file's first 60 MB (about 6,200 lines at 768 dimensions, 1,500 at 3,072): their
   rates are per line, and the naive way would otherwise take a third of the run.
2. End to end: :meth:`GeminiBatchClient.retrieve_results` (SDK download to a temp file,
   then parsing in a worker thread) against the in-process emulator, same file, same
   naive baseline.
3. Memory, each size in a fresh process (:mod:`benchmarks._memprobe`): the peak RSS
   while parsing 1,000 and 10,000 lines at 3,072 dimensions (500 and 2,000 with
   ``--quick``) from a file on disk, and the peak RSS of ``retrieve_results``
   downloading the emulator's own 768-dimension result files over loopback HTTP
   (real streaming, no in-memory body; the emulator's sparse vectors keep its run
   short). Target: flat, the bigger file within 16 MiB of the smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.adapters.gemini.results import iter_result_slices
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import BatchLine, ResultCounts
from asemantic.testing.emulator import GeminiEmulator
from benchmarks._common import Row, print_rows, quiet, row
from benchmarks._emulated import (
    FAST_RETRY,
    DenseResults,
    dense_result_file,
    keyring,
    result_key,
)

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parents[1]
NAIVE = "json.loads + struct.pack"
FLOOR = "orjson.loads + struct.pack, no checks"
FLAT_SLACK_MIB = 16.0
BASELINE_BYTES = 60e6


@dataclass(frozen=True, slots=True)
class Sizes:
    lines: int
    repeats: int
    memory_lines: tuple[int, int]


def sizes_for(quick: bool) -> Sizes:
    if quick:
        return Sizes(lines=1_000, repeats=2, memory_lines=(500, 2_000))
    return Sizes(lines=10_000, repeats=3, memory_lines=(1_000, 10_000))


# --- 1. parsing a file on disk -----------------------------------------------------------


def time_asemantic(path: Path, keys: set[str], dims: int) -> float:
    """Lines per second of :func:`iter_result_slices` over the whole file."""
    counts = ResultCounts()
    start = time.perf_counter()
    with path.open("rb") as stream:
        for _ in iter_result_slices(stream, expected_keys=keys, counts=counts, dimensions=dims):
            pass
    elapsed = time.perf_counter() - start
    if counts.succeeded != len(keys):
        raise RuntimeError(f"parsed {counts.succeeded} of {len(keys)} lines")
    return len(keys) / elapsed


def time_naive(path: Path, limit: int) -> float:
    """Lines per second of the naive way: stdlib json per line, struct.pack of every float."""
    start = time.perf_counter()
    with path.open("rb") as stream:
        for line in itertools.islice(stream, limit):
            values = json.loads(line)["response"]["embedding"]["values"]
            struct.pack(f"<{len(values)}f", *values)
    return limit / (time.perf_counter() - start)


def time_floor(path: Path, limit: int) -> float:
    """Lines per second of the least work that makes a float32 blob (no key, no checks)."""
    start = time.perf_counter()
    with path.open("rb") as stream:
        for line in itertools.islice(stream, limit):
            values = orjson.loads(line)["response"]["embedding"]["values"]
            struct.pack(f"<{len(values)}f", *values)
    return limit / (time.perf_counter() - start)


@dataclass(frozen=True, slots=True)
class ParseRates:
    """Lines per second (medians)."""

    asemantic: float
    retrieve: float
    naive: float
    floor: float
    baseline_lines: int


def measure_rates(
    path: Path, job: EmulatedJob, keys: set[str], dims: int, repeats: int
) -> ParseRates:
    """Medians of ``repeats`` rounds; each round times all four, so load shifts hit all.

    The baselines read at most the file's first ``BASELINE_BYTES`` (see the module doc).
    """
    line_bytes = path.stat().st_size / len(keys)
    limit = min(len(keys), max(1, int(BASELINE_BYTES / line_bytes)))
    runs = [
        (
            time_asemantic(path, keys, dims),
            len(keys) / asyncio.run(time_retrieve(job, keys, dims)),
            time_naive(path, limit),
            time_floor(path, limit),
        )
        for _ in range(repeats)
    ]
    return ParseRates(
        asemantic=statistics.median(r[0] for r in runs),
        retrieve=statistics.median(r[1] for r in runs),
        naive=statistics.median(r[2] for r in runs),
        floor=statistics.median(r[3] for r in runs),
        baseline_lines=limit,
    )


def parse_rows(rates: ParseRates, lines: int, dims: int, megabytes: float) -> list[Row]:
    name = f"iter_result_slices {lines:,} lines x {dims}d ({megabytes:.0f} MB)"
    first = "" if rates.baseline_lines == lines else f" (first {rates.baseline_lines:,} lines)"
    return [
        row(
            name,
            rates.asemantic,
            "lines/s",
            baseline=NAIVE + first,
            baseline_figure=rates.naive,
            target=">= 4x baseline",
            met=rates.asemantic >= 4.0 * rates.naive,
        ),
        row(name, rates.asemantic, "lines/s", baseline=FLOOR + first, baseline_figure=rates.floor),
    ]


# --- 2. retrieve_results end to end ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatedJob:
    emulator: GeminiEmulator
    transport: DenseResults
    name: str
    output_file: str


async def emulated_job(lines: int) -> EmulatedJob:
    """A finished emulator job of ``lines`` keys; its result file will be replaced."""
    emulator = GeminiEmulator()
    transport = DenseResults(emulator)
    # The emulator computes the job's own vectors; 128 dimensions keeps that cheap.
    client = GeminiBatchClient(
        keyring(),
        space=EmbeddingSpace(dimensions=128),
        base_url=emulator.base_url,
        transport=transport,
        retry=FAST_RETRY,
    )
    try:
        batch = [BatchLine(key=result_key(i), text=f"line {i}") for i in range(lines)]
        job = await client.create_embedding_job(batch, display_name="bench-results")
        emulator.complete_all()
        status = await client.get_job_status(job.name)
    finally:
        await client.aclose()
    if status.output_file is None:
        raise RuntimeError("the emulator job named no result file")
    return EmulatedJob(
        emulator=emulator, transport=transport, name=job.name, output_file=status.output_file
    )


async def time_retrieve(job: EmulatedJob, keys: set[str], dims: int) -> float:
    client = GeminiBatchClient(
        keyring(),
        space=EmbeddingSpace(dimensions=dims),
        base_url=job.emulator.base_url,
        transport=job.transport,
        retry=FAST_RETRY,
    )
    try:
        await client.get_job_status(job.name)  # builds the SDK client, outside the timing
        counts = ResultCounts()
        start = time.perf_counter()
        async for _ in client.retrieve_results(job.output_file, expected_keys=keys, counts=counts):
            pass
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    if counts.succeeded != len(keys):
        raise RuntimeError(f"retrieved {counts.succeeded} of {len(keys)} lines")
    return elapsed


def retrieve_row(rates: ParseRates, lines: int, dims: int) -> Row:
    first = "" if rates.baseline_lines == lines else f" (first {rates.baseline_lines:,} lines)"
    return row(
        f"retrieve_results {lines:,} lines x {dims}d (in-process emulator)",
        rates.retrieve,
        "lines/s",
        baseline=NAIVE + first,
        baseline_figure=rates.naive,
        target=">= 4x baseline",
        met=rates.retrieve >= 4.0 * rates.naive,
    )


def bench_dims(workdir: Path, job: EmulatedJob, dims: int, sizes: Sizes) -> list[Row]:
    keys_list = [result_key(i) for i in range(sizes.lines)]
    body = dense_result_file(keys_list, dims, seed=dims)
    path = workdir / f"results-{dims}.jsonl"
    path.write_bytes(body)
    job.transport.register(job.output_file, body)
    keys = set(keys_list)
    rates = measure_rates(path, job, keys, dims, sizes.repeats)
    rows = parse_rows(rates, sizes.lines, dims, len(body) / 1e6)
    rows.append(retrieve_row(rates, sizes.lines, dims))
    path.unlink()
    return rows


# --- 3. memory, each size in a fresh process ---------------------------------------------


def probe(*args: str) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks._memprobe", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, check=True, timeout=600)
    result: dict[str, float] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def _mib(kib: float) -> float:
    return kib / 1024


def flat_row(name: str, unit_label: str, small: float, big: float, lines: tuple[int, int]) -> Row:
    """Peak growth at the big size next to the small one; flat within a slack."""
    return row(
        f"{name}, {lines[1]:,} lines",
        big,
        unit_label,
        baseline=f"same, {lines[0]:,} lines",
        baseline_figure=small,
        target=f"flat: <= baseline + {FLAT_SLACK_MIB:.0f} MiB",
        met=big <= small + FLAT_SLACK_MIB,
    )


def parse_memory_row(workdir: Path, dims: int, lines: tuple[int, int]) -> Row:
    peaks: list[float] = []
    for n in lines:
        path = workdir / f"memory-{n}.jsonl"
        path.write_bytes(dense_result_file([result_key(i) for i in range(n)], dims, seed=n))
        result = probe("parse", str(path), "--lines", str(n), "--dims", str(dims))
        peaks.append(_mib(result["rss_peak_kib"]))
        path.unlink()
    name = f"iter_result_slices peak RSS, {dims}d file on disk"
    return flat_row(name, "MiB", peaks[0], peaks[1], lines)


async def _loopback_jobs(
    emulator: GeminiEmulator, url: str, dims: int, lines: Sequence[int]
) -> list[str]:
    client = GeminiBatchClient(
        keyring(), space=EmbeddingSpace(dimensions=dims), base_url=url, retry=FAST_RETRY
    )
    try:
        names = []
        for n in lines:
            batch = [BatchLine(key=result_key(i), text=f"line {i} of {n}") for i in range(n)]
            names.append((await client.create_embedding_job(batch, display_name=f"m{n}")).name)
        emulator.complete_all()
        outputs = [(await client.get_job_status(name)).output_file for name in names]
    finally:
        await client.aclose()
    return [str(output) for output in outputs]


def retrieve_memory_row(dims: int, lines: tuple[int, int]) -> Row:
    emulator = GeminiEmulator()
    growth: list[float] = []
    with emulator.serve() as url:
        outputs = asyncio.run(_loopback_jobs(emulator, url, dims, lines))
        for n, output in zip(lines, outputs, strict=True):
            flags = ["--lines", str(n), "--dims", str(dims), "--base-url", url]
            growth.append(_mib(probe("retrieve", output, *flags)["rss_peak_kib"]))
        size = next(f.size_bytes for f in emulator.files if f.name == outputs[1]) / 1e6
    name = f"retrieve_results loopback HTTP peak RSS, {dims}d ({size:.0f} MB file)"
    return flat_row(name, "MiB", growth[0], growth[1], lines)


# --- running -----------------------------------------------------------------------------


def run(quick: bool) -> list[Row]:
    """Every benchmark of this module, as rows (see :mod:`benchmarks._common`)."""
    sizes = sizes_for(quick)
    rows: list[Row] = []
    with quiet(), tempfile.TemporaryDirectory(prefix="asemantic-bench-") as tmp:
        workdir = Path(tmp)
        job = asyncio.run(emulated_job(sizes.lines))
        for dims in (768, 3072):
            rows.extend(bench_dims(workdir, job, dims, sizes))
        rows.append(parse_memory_row(workdir, 3072, sizes.memory_lines))
        rows.append(retrieve_memory_row(768, sizes.memory_lines))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller, faster run")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))


if __name__ == "__main__":
    main()
