"""How fast the Gemini emulator builds a job's result file, and whether it stalls its loop.

Run ``python -m benchmarks.bench_emulator`` (``--quick`` for a short run). A job of
29,340 lines (2,000 with ``--quick``) of about 150 words each, at 768 dimensions:

Generation figures are CPU seconds of this process (``time.process_time``: the machine
may be shared); the stall is wall time.

* the emulator's generation (what a poll that finishes the job pays), against the
  previous per-line path measured in the same run (uncached lexical features, the
  domain's token count, ``json.dumps`` of a list per line), and against a floor:
  ``orjson`` dumping the same, already computed lines;
* the same with dense vectors (``dense_vectors=True``: about 10 KB a line, like
  Google's), and the line sizes of both;
* the longest event-loop stall while the real SDK polls (in-process transport) the job
  into SUCCEEDED, against the generation time (what the loop stalled for when the
  file was built on it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from asemantic.domain.tokens import approximate_tokens
from asemantic.testing.emulator import GeminiEmulator
from asemantic.testing.emulator.clock import ManualClock
from asemantic.testing.emulator.state import FileRecord
from asemantic.testing.emulator.wire import EmulatorRequest
from asemantic.testing.lexical import lexical_features
from benchmarks._common import Row, print_rows, quiet, row

__all__ = ["main", "run"]

MODEL = "gemini-embedding-001"
DIMS = 768


def corpus(count: int, seed: int = 7) -> list[str]:
    """``count`` texts of about 150 words from a Zipf-like vocabulary of 20,000 words."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qu", "an", "el"]
    vocabulary = [
        "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) + str(i % 7)
        for i in range(20_000)
    ]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    return [
        " ".join(rng.choices(vocabulary, weights=weights, k=rng.randint(120, 180))) + "."
        for _ in range(count)
    ]


def input_jsonl(texts: Sequence[str]) -> bytes:
    lines = (
        orjson.dumps(
            {
                "key": f"{i}-{i:012x}",
                "request": {
                    "content": {"parts": [{"text": text}]},
                    "taskType": "RETRIEVAL_DOCUMENT",
                    "outputDimensionality": DIMS,
                },
            }
        )
        for i, text in enumerate(texts)
    )
    return b"".join(line + b"\n" for line in lines)


def legacy_result_file(texts: Sequence[str]) -> bytes:
    """The previous generator, line by line: the domain's token count, uncached lexical
    features, rounding, ``json.dumps``."""
    out = []
    for i, text in enumerate(texts):
        tokens = approximate_tokens(text)
        features = lexical_features(text, DIMS).astype(np.float64)
        length = float(np.linalg.norm(features))
        unit = features / length * (0.3 + 0.6 * length / (length + 4.0))
        values: list[float] = np.round(unit, 8).tolist()
        line = {
            "key": f"{i}-{i:012x}",
            "response": {
                "embedding": {"values": values},
                "usageMetadata": {"promptTokenCount": tokens},
            },
        }
        out.append(json.dumps(line))
    return "".join(f"{line}\n" for line in out).encode()


def emulator_with_job(texts: Sequence[str], **settings: Any) -> tuple[GeminiEmulator, str]:
    """An emulator holding one file-based job over ``texts`` (done on the next request)."""
    emulator = GeminiEmulator(**{"pending_seconds": 0.0, "running_seconds": 0.0, **settings})
    data = input_jsonl(texts)
    emulator._store.files["benchinput"] = FileRecord(  # a fixture: no upload
        file_id="benchinput",
        seq=emulator._store.next_seq(),
        display_name="bench",
        mime_type="application/jsonl",
        data=data,
        source="UPLOADED",
        create_time=emulator.clock.now(),
        expire_time=None,
    )
    body = {"batch": {"displayName": "bench", "inputConfig": {"fileName": "files/benchinput"}}}
    answer = emulator.handle(
        EmulatorRequest(
            method="POST",
            path=f"/v1beta/models/{MODEL}:asyncBatchEmbedContent",
            headers={"x-goog-api-key": "bench-key", "content-type": "application/json"},
            body=json.dumps(body).encode(),
        )
    )
    assert answer.status == 200, answer.body[:300]
    return emulator, answer.json()["name"]


def timed_generation(texts: Sequence[str], **settings: Any) -> tuple[float, bytes]:
    emulator, name = emulator_with_job(texts, **settings)
    started = time.process_time()
    emulator.complete_all()
    seconds = time.process_time() - started
    output = emulator.batch(name).output_file
    assert output is not None
    return seconds, emulator.file_content(output)


async def loop_stall(texts: Sequence[str]) -> tuple[float, float]:
    """The longest event-loop gap (s) while the SDK polls the job to SUCCEEDED."""
    from google import genai

    clock = ManualClock()
    emulator, name = emulator_with_job(texts, clock=clock, running_seconds=60.0)
    client = genai.Client(api_key="bench-key", vertexai=False, http_options=emulator.http_options())
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    # The SDK's first call imports modules and builds pydantic schemas on the loop
    # (about 0.1 s): one listing first (the job still RUNNING), then the job's time is
    # up, so the stall measured is the emulator's building the file.
    async for _ in await client.aio.batches.list(config={"page_size": 1}):
        break
    clock.advance(60.0)
    # Setting up (the input's ~150k parsed objects) leaves a full collection owed, which
    # would fall in the window whichever thread allocates next: paid here instead.
    gc.collect()
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    job = await client.aio.batches.get(name=name)
    took = time.perf_counter() - started
    stop.set()
    await task
    await client.aio.aclose()
    assert job.state is not None
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    return max(gaps) - 0.005, took


def run(quick: bool) -> list[Row]:
    """Every benchmark of this module, as rows (see :mod:`benchmarks._common`)."""
    count = 2_000 if quick else 29_340
    texts = corpus(count)
    rows: list[Row] = []
    with quiet():
        started = time.process_time()
        legacy = legacy_result_file(texts)
        legacy_seconds = time.process_time() - started
        new_seconds, produced = timed_generation(texts)
        parsed = [orjson.loads(line) for line in produced.splitlines()]
        started = time.process_time()
        floor = b"".join(orjson.dumps(line) + b"\n" for line in parsed)
        floor_seconds = time.process_time() - started
        assert floor
        assert legacy
        dense_seconds, dense = timed_generation(texts, dense_vectors=True)
        stall, poll_seconds = asyncio.run(loop_stall(texts))
    speedup = legacy_seconds / new_seconds
    rows.append(
        row(
            f"emulator result file, {count:,} lines {DIMS}d",
            new_seconds,
            "cpu s",
            baseline="previous per-line path (uncached features, json.dumps)",
            baseline_figure=legacy_seconds,
            target=">= 5x faster than the previous path",
            met=speedup >= 5.0,
        )
    )
    rows.append(
        row(
            f"emulator result file vs serialisation floor, {count:,} lines",
            new_seconds,
            "cpu s",
            baseline="orjson.dumps of the same computed lines (floor)",
            baseline_figure=floor_seconds,
        )
    )
    rows.append(
        row(
            f"emulator dense result file, {count:,} lines {DIMS}d",
            dense_seconds,
            "cpu s",
            baseline="previous per-line path (sparse values)",
            baseline_figure=legacy_seconds,
        )
    )
    rows.append(
        row(
            f"emulator dense line size, {DIMS}d",
            len(dense) / count,
            "B/line",
            baseline="lexical (sparse) line size",
            baseline_figure=len(produced) / count,
            target="about 10 KB a line (Google's)",
            met=8_000 <= len(dense) / count <= 12_000,
        )
    )
    rows.append(
        row(
            f"event-loop stall while a poll finishes a {count:,}-line job",
            stall * 1000,
            "ms",
            baseline="that poll's duration (the stall when built on the loop)",
            baseline_figure=poll_seconds * 1000,
            target="< 50 ms",
            met=stall < 0.05,
        )
    )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller, faster run")
    args = parser.parse_args(argv)
    print_rows(run(args.quick))


if __name__ == "__main__":
    main()
