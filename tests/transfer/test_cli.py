"""``asemantic copy``: progress per batch, the table of counts and checksums, exit codes;
and a copy killed with SIGKILL in a real process, then run again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asemantic.adapters.factory import open_store
from asemantic.cli import cli
from asemantic.cli.context import shown_target
from asemantic.testing.emulator import GeminiEmulator
from tests.transfer.conftest import open_core_on, sql, table_rows

ENV = {"GEMINI_API_KEY": None, "GEMINI_BATCH_API_KEY": None, "ASEMANTIC_DB": None}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV, catch_exceptions=False)


def test_copy_prints_a_line_per_batch_and_the_verified_table(
    source_kb: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "copy.db"
    result = run("copy", str(source_kb), str(dst), "--batch-size", "10")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"copying {source_kb} -> {dst}"
    assert "copy: documents batch 1: 10/21 rows" in lines
    assert "copy: documents batch 3: 21/21 rows" in lines
    assert sum(1 for line in lines if line.startswith("copy: chunks batch ")) == 3
    out = result.stdout
    for table in ("documents", "batch_jobs", "chunks", "vectors", "usage_ledger"):
        assert any(
            line.split()[:1] == [table] and line.rstrip().endswith("ok")
            for line in out.splitlines()
        ), table
    assert "verified: counts and checksums match" in out
    # Again: resumed, nothing copied.
    again = run("--json", "copy", str(source_kb), str(dst))
    assert again.exit_code == 0, again.stderr
    record = json.loads(again.stdout)
    assert record["verified"] and record["resumed"]
    assert {t["table"]: t["copied"] for t in record["tables"]}["chunks"] == 0
    assert all(t["source_sha256"] == t["destination_sha256"] for t in record["tables"])
    assert again.stderr == ""


def test_a_mismatch_prints_the_table_and_exits_5(source_kb: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy.db"
    assert run("copy", str(source_kb), str(dst)).exit_code == 0
    asyncio.run(sql(dst, "UPDATE documents SET title = 'changed' WHERE id = 2"))
    result = run("copy", str(source_kb), str(dst))
    assert result.exit_code == 5
    assert "MISMATCH" in result.stdout and "NOT verified" in result.stdout
    assert "error: the copy does not match its source in documents" in result.stderr
    assert "hint: " in result.stderr and "Traceback" not in result.stderr


def test_refusals_exit_with_a_clear_error(
    source_kb: Path, tmp_path: Path, emulator: GeminiEmulator
) -> None:
    missing = run("copy", str(tmp_path / "missing.db"), str(tmp_path / "dst.db"))
    assert missing.exit_code == 5
    assert "error: no knowledge base at" in missing.stderr
    assert not (tmp_path / "dst.db").exists()
    same = run("copy", str(source_kb), str(source_kb))
    assert same.exit_code == 2 and "the same knowledge base" in same.stderr
    other = tmp_path / "other.db"
    asyncio.run(_other(other, emulator))
    refused = run("copy", str(source_kb), str(other))
    assert refused.exit_code == 5 and "another knowledge base" in refused.stderr
    assert [row[1] for row in table_rows(other, "documents")] == ["other"]


def test_copy_is_a_command() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "copy" in result.stdout.split()
    usage = run("copy", "--help")
    assert "Usage: asemantic copy [OPTIONS] SRC DST" in usage.stdout
    assert "--batch-size" in usage.stdout


def test_a_url_password_is_never_shown() -> None:
    assert shown_target("postgresql://kb:s3cret@db.example:5432/kb") == (
        "postgresql://kb:***@db.example:5432/kb"
    )
    assert shown_target("postgresql://db.example/kb") == "postgresql://db.example/kb"
    assert shown_target("kb.db") == "kb.db"


async def _other(path: Path, emulator: GeminiEmulator) -> None:
    core = await open_core_on(emulator, path)
    await core.ingest("# Other\n\nsome other text", source="other", mode="sync")
    await core.aclose()


async def _big_source(path: Path, emulator: GeminiEmulator) -> int:
    core = await open_core_on(emulator, path)
    sections = "\n\n".join(
        f"## Part {i}\n\n" + " ".join(f"topic{i} word{j}" for j in range(30)) for i in range(400)
    )
    result = await core.ingest(f"# Big\n\n{sections}\n", source="big", mode="sync")
    await core.ingest("# Later\n\nqueued for a batch", source="later", mode="async")
    await core.batch_manager.flush_queue(min_size=1)
    await core.aclose()
    return result.chunks_stored + 1


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_copy_killed_mid_way_resumes_and_verifies(
    tmp_path: Path, emulator: GeminiEmulator, engine: str, request: pytest.FixtureRequest
) -> None:
    src = tmp_path / "big.db"
    dst = str(tmp_path / "copy.db")
    if engine == "postgres":
        dst = str(request.getfixturevalue("postgres_url"))
    chunks = asyncio.run(_big_source(src, emulator))
    assert chunks > 300
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "ASEMANTIC_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "asemantic.cli", "copy", str(src), dst, "--batch-size", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if line.startswith("copy: chunks batch 20:"):
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    copied, problems = asyncio.run(_inspect(dst))
    assert 20 <= copied < chunks  # a prefix, killed part way
    assert problems == "ok"  # each page landed whole
    result = run("--json", "copy", str(src), dst, "--batch-size", "50")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["verified"] and record["resumed"]
    by_table = {t["table"]: t for t in record["tables"]}
    assert by_table["chunks"]["copied"] == chunks - copied
    assert by_table["chunks"]["destination_rows"] == chunks
    assert by_table["vectors"]["destination_rows"] == chunks - 1  # one chunk waits in a job
    assert asyncio.run(_inspect(dst)) == (chunks, "ok")  # every chunk once: no duplicate
    if engine == "sqlite":
        assert table_rows(Path(dst), "supervisor_lease") == []  # the re-run released it
        assert table_rows(Path(dst), "batch_jobs", "id, status")[0][1] == "SUBMITTED"


async def _inspect(target: str) -> tuple[int, str]:
    """How many chunks the knowledge base at ``target`` holds, and its integrity check."""
    store = await open_store(target, space=None)
    try:
        return sum((await store.count_chunks_by_status()).values()), await store.integrity_check()
    finally:
        await store.aclose()
