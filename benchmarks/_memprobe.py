"""Peak memory of reading one result file, measured in a fresh process.

``python -m benchmarks._memprobe parse FILE --lines N --dims D`` reads
a result file of ``N`` lines (keys from :func:`benchmarks._emulated.result_key`) with
:func:`~asemantic.adapters.gemini.results.iter_result_slices`;
``python -m benchmarks._memprobe retrieve OUTPUT_FILE --base-url URL --lines N --dims D``
downloads and reads one through :meth:`GeminiBatchClient.retrieve_results` from a
loopback emulator. Either prints one JSON object: the peak RSS (``VmHWM`` on Linux)
before and after the reading (KiB) and their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.adapters.gemini.results import iter_result_slices
from asemantic.domain.space import EmbeddingSpace
from asemantic.ports import ResultCounts
from benchmarks._common import quiet
from benchmarks._emulated import FAST_RETRY, keyring, result_key

__all__ = ["main"]


def _peak_kib() -> int:
    """The peak RSS of this process image, in KiB.

    Linux: ``VmHWM``, which starts afresh at ``exec``; ``ru_maxrss`` would carry over
    the peak of the parent that forked this process.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _parse(path: Path, keys: set[str], dims: int) -> int:
    counts = ResultCounts()
    with path.open("rb") as stream:
        for _ in iter_result_slices(stream, expected_keys=keys, counts=counts, dimensions=dims):
            pass
    return counts.succeeded


async def _retrieve(base_url: str, output_file: str, keys: set[str], dims: int) -> int:
    client = GeminiBatchClient(
        keyring(), space=EmbeddingSpace(dimensions=dims), base_url=base_url, retry=FAST_RETRY
    )
    try:
        await client.find_files_by_prefix("warm-up")  # the SDK's first-call allocations
        counts = ResultCounts()
        async for _ in client.retrieve_results(output_file, expected_keys=keys, counts=counts):
            pass
        return counts.succeeded
    finally:
        await client.aclose()


def measure(args: argparse.Namespace) -> dict[str, float]:
    keys = {result_key(i) for i in range(args.lines)}
    before = _peak_kib()
    start = time.perf_counter()
    if args.command == "parse":
        succeeded = _parse(Path(args.target), keys, args.dims)
    else:
        with quiet():
            succeeded = asyncio.run(_retrieve(args.base_url, args.target, keys, args.dims))
    seconds = time.perf_counter() - start
    after = _peak_kib()
    return {
        "lines": succeeded,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_peak_kib": after,
        "rss_growth_kib": after - before,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("command", choices=("parse", "retrieve"))
    parser.add_argument("target", help="a result file (parse) or files/<id> (retrieve)")
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--dims", type=int, required=True)
    parser.add_argument("--base-url", default="")
    args = parser.parse_args(argv)
    sys.stdout.buffer.write(orjson.dumps(measure(args)) + b"\n")


if __name__ == "__main__":
    main()
