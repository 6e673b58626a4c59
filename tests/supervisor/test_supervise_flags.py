"""``asemantic supervise`` flags: --deadline, --max-job-tokens, --lease-wait.

The CLI runs in-process (click's runner) against a loopback emulator through the real
google-genai SDK; a live lease holder is a real child process.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from asemantic.batch.holders import process_start
from asemantic.cli.commands.supervise import parse_deadline
from asemantic.testing.emulator import GeminiEmulator
from tests.cli.conftest import DOCS, invoke


@pytest.fixture
def served() -> Iterator[tuple[GeminiEmulator, str]]:
    emulator = GeminiEmulator(pending_seconds=3600, running_seconds=3600)  # never by itself
    with emulator.serve() as url:
        yield emulator, url


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        if name.endswith((".md", ".markdown", ".txt")) and not name.startswith("."):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return root


def statuses(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT embedding_status, COUNT(*) FROM chunks GROUP BY 1")
        return {str(status): int(n) for status, n in rows}


def test_parse_deadline() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_deadline("+90s", now=now) == now + timedelta(seconds=90)
    assert parse_deadline("+1.5h", now=now) == now + timedelta(minutes=90)
    assert parse_deadline("+2d", now=now) == now + timedelta(days=2)
    assert parse_deadline("2026-05-02T08:00:00+00:00") == datetime(2026, 5, 2, 8, tzinfo=UTC)
    assert parse_deadline("2026-05-02T08:00").tzinfo is not None  # local time
    with pytest.raises(click.BadParameter):
        parse_deadline("tomorrow")


def test_deadline_embeds_what_batch_did_not_deliver_and_stats_show_the_route(
    tmp_path: Path, served: tuple[GeminiEmulator, str], docs: Path
) -> None:
    emulator, url = served
    db = tmp_path / "kb.db"
    base = ["--db", str(db), "--base-url", url]
    assert invoke([*base, "ingest", "--mode", "async", str(docs)]).exit_code == 0
    result = invoke(
        [
            *base,
            "--json",
            "supervise",
            "--poll-interval",
            "0.1",
            "--min-batch-size",
            "1",
            "--max-wait",
            "0",
            "--deadline",
            "+0s",
            "--until-idle",
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert statuses(db) == {"READY": 4}
    assert emulator.requests_to("models.batchEmbedContents")  # the online route
    stats = json.loads(invoke([*base, "--json", "stats"]).stdout)
    text = json.dumps(stats)
    assert "online" in text and "batch" in text
    assert not emulator.remote_leftovers()


def test_max_job_tokens_splits_jobs(
    tmp_path: Path, served: tuple[GeminiEmulator, str], docs: Path
) -> None:
    emulator, url = served
    db = tmp_path / "kb.db"
    base = ["--db", str(db), "--base-url", url]
    assert invoke([*base, "ingest", "--mode", "async", str(docs)]).exit_code == 0
    result = invoke(
        [
            *base,
            "--json",
            "supervise",
            "--poll-interval",
            "0.1",
            "--min-batch-size",
            "1",
            "--max-wait",
            "0",
            "--max-job-tokens",
            "1",  # one chunk a job
            "--deadline",
            "+0s",
            "--until-idle",
        ]
    )
    assert result.exit_code == 0, result.stderr
    with contextlib.closing(sqlite3.connect(db)) as conn:
        jobs = conn.execute("SELECT COUNT(*) FROM batch_jobs").fetchone()[0]
    assert jobs == 4
    assert len(emulator.requests_to("batches.create")) == 4


def test_lease_wait_waits_for_a_live_holder_instead_of_exiting(
    tmp_path: Path, served: tuple[GeminiEmulator, str], docs: Path
) -> None:
    _, url = served
    db = tmp_path / "kb.db"
    base = ["--db", str(db), "--base-url", url]
    assert invoke([*base, "ingest", "--mode", "async", str(docs)]).exit_code == 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{socket.gethostname()}:{child.pid}:{process_start(child.pid) or 0}:0badc0de"
        # Closed before the CLI runs: two SQLite libraries in one process must never
        # have the same file open at once (their POSIX locks do not see each other).
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                "INSERT INTO supervisor_lease (id, owner, expires_at) VALUES (1, ?, ?)",
                (owner, time.time() + 1.5),
            )
        args = ["supervise", "--poll-interval", "0.1", "--min-batch-size", "1"]
        refused = invoke([*base, *args, "--until-idle"])
        assert refused.exit_code != 0 and "--lease-wait" in refused.stderr
        waited = invoke(
            [*base, "--json", *args, "--lease-wait", "30", "--deadline", "+0s", "--until-idle"]
        )
        assert waited.exit_code == 0, waited.stderr
        assert statuses(db) == {"READY": 4}
    finally:
        child.kill()
        child.wait()
