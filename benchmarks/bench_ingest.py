"""Ingestion of a real corpus, end to end through the CLI, next to a floor.

Run ``python -m benchmarks.bench_ingest`` (``--quick``: about 2 MB). The corpus is the
Markdown documentation a machine already has: the ``.md`` files that installed Python
packages ship (this interpreter's ``site-packages``), ``/usr/share/doc`` and the
standard library's folder, the largest first. Nobody in the project wrote it, so it
holds what real documents hold: long changelogs, tables, code, non-ASCII text.

Rows (medians of interleaved repetitions, each next to a baseline timed in the same run):

1. ``asemantic ingest DIR --mode async`` in a fresh subprocess (interpreter start,
   imports, reading, splitting, hashing, the SQLite writes; no provider call: async
   chunks are stored PENDING), in MB/s against the floor: read + heading split
   (one regex) + SHA-256 of every piece + one ``executemany`` of the pieces into a
   table of the same shape, in-process, one transaction. Target: >= 15 MB/s.
   ``--before TREE`` also times the CLI of another source tree (``PYTHONPATH=TREE``,
   e.g. a checkout of an earlier commit), interleaved with the others: a before/after
   pair from the same run.
2. The CPU seconds of that CLI run (user + system, worker included) against the
   floor's, a steadier figure than wall time on a busy machine; and its peak RSS (its
   largest process), against the floor's process.
3. The splitter alone (``MarkdownSplitter``, the CLI's budgets), against a peer
   splitter from the package index when one is installed (``semchunk``, with
   asemantic's token estimate as its counter, so both keep the same bound). Peers are
   never dependencies of asemantic: ``pip install semchunk`` to get that column.
4. ``asemantic ingest DIR --mode sync`` against the emulator (in its own process) on
   the first files of the corpus (about 2 MB), against the splitter alone on the same
   files: the ratio is the share of a sync ingest spent splitting.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asemantic.domain.chunking import MarkdownSplitter
from asemantic.domain.text import clean_text
from asemantic.domain.tokens import estimate_tokens
from benchmarks._common import Row, print_rows, row
from benchmarks._emuserver import EmulatorProcess

__all__ = ["corpus", "main", "run"]

_HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)
_ROOTS = ("/usr/share/doc",)


def corpus(limit_bytes: int) -> list[Path]:
    """Markdown files this machine ships (valid UTF-8, not empty), largest first,
    up to about ``limit_bytes``; one file per content (packages repeat licences)."""
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], *_ROOTS]
    found: dict[str, Path] = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                if name.lower().endswith(".md"):
                    path = Path(folder) / name
                    if path.is_file() and not path.is_symlink():
                        found.setdefault(str(path.resolve()), path)
    files = sorted(found.values(), key=lambda p: (-p.stat().st_size, str(p)))
    chosen: list[Path] = []
    seen: set[str] = set()
    total = 0
    for path in files:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen or not data.strip():
            continue
        try:
            clean_text(data)
        except Exception:  # not UTF-8, NUL...: the CLI would refuse the whole run
            continue
        seen.add(digest)
        chosen.append(path)
        total += len(data)
        if total >= limit_bytes:
            break
    return chosen


def _link(files: Sequence[Path], folder: Path) -> None:
    folder.mkdir()
    for i, path in enumerate(files):
        (folder / f"{i:05d}_{path.name}").symlink_to(path)


def _cli(
    folder: Path,
    db: Path,
    *,
    mode: str = "async",
    base_url: str | None = None,
    tree: Path | None = None,
) -> tuple[float, int, float]:
    """Seconds, peak RSS (KiB, its largest process) and CPU seconds (user + system, of
    it and its children) of one ``asemantic ingest``."""
    env = dict(os.environ, GEMINI_API_KEY="bench-key", GEMINI_BATCH_API_KEY="bench-batch-key")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    command = ["-m", "asemantic.cli", "--db", str(db)]
    if base_url is not None:
        command += ["--base-url", base_url]
    command += ["ingest", str(folder), "--mode", mode]
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=folder.parent,  # not this checkout: ``-m`` puts the working folder first
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.stderr.close()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"asemantic ingest failed: {stderr.decode(errors='replace')[-2000:]}")
    return seconds, int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime


def _floor(files: Sequence[Path], db: Path) -> tuple[float, float]:
    """Seconds and CPU seconds (this process) of the floor."""
    start, cpu = time.perf_counter(), time.process_time()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE chunks (id INTEGER PRIMARY KEY, document TEXT NOT NULL, "
        "position INTEGER NOT NULL, text TEXT NOT NULL, content_hash TEXT NOT NULL)"
    )
    rows = []
    for path in files:
        text = path.read_bytes().decode("utf-8")
        for position, piece in enumerate(_HEADING.split(text)):
            digest = hashlib.sha256(piece.encode("utf-8")).hexdigest()
            rows.append((str(path), position, piece, digest))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO chunks (document, position, text, content_hash) VALUES (?, ?, ?, ?)", rows
    )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - start, time.process_time() - cpu


def _split(texts: Sequence[str]) -> float:
    splitter = MarkdownSplitter(target_tokens=400, max_tokens=1500)
    start = time.perf_counter()
    for text in texts:
        splitter.split(text)
    return time.perf_counter() - start


def _peer_split(texts: Sequence[str]) -> float | None:
    try:
        import semchunk  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    chunkerify: Any = getattr(semchunk, "chunkerify")  # noqa: B009 (untyped peer)
    chunker = chunkerify(estimate_tokens, 400)
    start = time.perf_counter()
    for text in texts:
        chunker(text)
    return time.perf_counter() - start


def _sync_rows(files: Sequence[Path], workdir: Path, repeats: int) -> list[Row]:
    """A sync ingest of about 2 MB against the emulator, next to splitting it alone."""
    subset: list[Path] = []
    for path in files:
        subset.append(path)
        if sum(p.stat().st_size for p in subset) >= 2_000_000:
            break
    mb = sum(p.stat().st_size for p in subset) / 1e6
    _link(subset, workdir / "sync-corpus")
    texts = [clean_text(p.read_bytes()) for p in subset]
    sync: list[float] = []
    split: list[float] = []
    with EmulatorProcess() as emulator:
        for i in range(max(1, repeats // 2)):
            db = workdir / f"sync-{i}.db"
            seconds = _cli(workdir / "sync-corpus", db, mode="sync", base_url=emulator.base_url)[0]
            sync.append(seconds)
            split.append(_split(texts))
    return [
        row(
            f"ingest --mode sync through the CLI against the emulator, {mb:.1f} MB "
            "(ratio: the share of it spent splitting)",
            mb / statistics.median(sync),
            "MB/s",
            baseline="split only, the same files",
            baseline_figure=mb / statistics.median(split),
        )
    ]


def run(quick: bool, before: Path | None = None) -> list[Row]:
    files = corpus(2_000_000 if quick else 40_000_000)
    size = sum(p.stat().st_size for p in files)
    mb = size / 1e6
    repeats = 2 if quick else 5
    print(f"corpus: {len(files)} Markdown files, {mb:.1f} MB", file=sys.stderr)
    cli: list[float] = []
    rss: list[int] = []
    cpu: list[float] = []
    old: list[float] = []
    old_cpu: list[float] = []
    floor: list[float] = []
    floor_cpu: list[float] = []
    floor_rss: list[int] = []
    with tempfile.TemporaryDirectory(prefix="asemantic-bench-ingest-") as tmp:
        workdir = Path(tmp)
        _link(files, workdir / "corpus")
        for i in range(repeats):
            floor_seconds, floor_cpu_seconds = _floor(files, workdir / f"floor-{i}.db")
            floor.append(floor_seconds)
            floor_cpu.append(floor_cpu_seconds)
            floor_rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            seconds, peak, cpu_seconds = _cli(workdir / "corpus", workdir / f"cli-{i}.db")
            cli.append(seconds)
            rss.append(peak)
            cpu.append(cpu_seconds)
            if before is not None:
                old_run = _cli(workdir / "corpus", workdir / f"old-{i}.db", tree=before)
                old.append(old_run[0])
                old_cpu.append(old_run[2])
        sync_rows = _sync_rows(files, workdir, repeats)
    texts = [clean_text(p.read_bytes()) for p in files]
    split = [_split(texts) for _ in range(repeats)]
    cli_rate, floor_rate = mb / statistics.median(cli), mb / statistics.median(floor)
    print(
        "CLI seconds: "
        + " ".join(f"{s:.2f}" for s in cli)
        + "; floor seconds: "
        + " ".join(f"{s:.2f}" for s in floor),
        file=sys.stderr,
    )
    rows = [
        row(
            f"ingest --mode async through the CLI, {mb:.1f} MB of real Markdown",
            cli_rate,
            "MB/s",
            baseline="read + heading split + sha256 + executemany",
            baseline_figure=floor_rate,
            target=">= 15 MB/s",
            met=cli_rate >= 15,
        ),
        row(
            "CPU seconds of that CLI run (user + system, with its worker)",
            statistics.median(cpu),
            "s",
            baseline="the floor's CPU seconds",
            baseline_figure=statistics.median(floor_cpu),
        ),
        row(
            "peak RSS of that CLI run (its largest process)",
            max(rss) / 1024,
            "MiB",
            baseline="the floor's process",
            baseline_figure=max(floor_rss) / 1024,
        ),
    ]
    if old:
        rows.append(
            row(
                f"ingest --mode async through the CLI of {before}",
                mb / statistics.median(old),
                "MB/s",
                baseline="this tree's CLI, same run",
                baseline_figure=cli_rate,
            )
        )
        rows.append(
            row(
                f"CPU seconds of the CLI of {before}",
                statistics.median(old_cpu),
                "s",
                baseline="this tree's CLI, same run",
                baseline_figure=statistics.median(cpu),
            )
        )
    peer = _peer_split(texts)
    split_rate = mb / statistics.median(split)
    if peer is None:
        print("semchunk is not installed: no peer splitter column", file=sys.stderr)
        rows.append(
            row(
                "split only, MarkdownSplitter",
                split_rate,
                "MB/s",
                baseline="the same floor",
                baseline_figure=floor_rate,
            )
        )
    else:
        rows.append(
            row(
                "split only, MarkdownSplitter",
                split_rate,
                "MB/s",
                baseline="semchunk, same token counter and budget",
                baseline_figure=mb / peer,
            )
        )
    return rows + sync_rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 2 MB")
    parser.add_argument("--before", type=Path, help="also time the CLI of this source tree")
    args = parser.parse_args(argv)
    print_rows(run(args.quick, args.before))


if __name__ == "__main__":
    main()
