"""Wrong input, bad keys, no provider, no database: a clear line, the right code, no writes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from asemantic.testing.emulator import GeminiEmulator
from tests.cli.conftest import BATCH_KEY, ONLINE_KEY, Cli, assert_clean_error, invoke, rows

# --- usage and input errors (exit 2): nothing is created ------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ingest", "missing.md"], "does not exist"),
        (["ingest", "--mode", "later", "DOCS"], "'later' is not one of"),
        (["ingest"], "Missing argument"),
        (["search", "refunds", "--filter", "no-equals-sign"], "is not KEY=VALUE"),
        (["search", "refunds", "--filter", "=3"], "is not KEY=VALUE"),
        (["search", "refunds", "--filter", "document_id=abc"], "takes int values"),
        (["search", "refunds", "--filter", "team=a", "--filter", "team=b"], "given twice"),
        (["search", "refunds", "--filter", 'year={"$foo": 1}'], "unknown filter operator $foo"),
        (["search", "refunds", "--filter", 'year={"$in": 2020}'], "$in takes a list"),
        (["search", "refunds", "-k", "0"], "0 is not in the range"),
        (["search", "   "], "the query is empty"),
        (["batch", "flush", "--min-size", "0"], "0 is not in the range"),
        (["supervise", "--poll-interval", "0"], "is not in the range"),
        (["--dimensions", "5", "stats"], "5 is not in the range"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_and_create_nothing(
    run: Cli, docs: Path, args: list[str], needle: str
) -> None:
    args = [str(docs) if arg == "DOCS" else arg for arg in args]
    result = run(*args)
    assert_clean_error(result, 2, needle)
    assert not run.db.exists()


def test_bad_files_write_nothing(run: Cli, docs: Path) -> None:
    (docs / "broken.md").write_bytes(b"# Broken\n\n\xff\xfe not utf-8\n")
    result = run("ingest", "--mode", "sync", str(docs))
    assert_clean_error(result, 2, "broken.md")
    assert not run.db.exists()
    (docs / "broken.md").write_text("   \n\n", encoding="utf-8")
    assert_clean_error(run("ingest", str(docs / "broken.md")), 2, "broken.md")
    assert not run.db.exists()
    (docs / "broken.md").write_text("# Only a heading\n", encoding="utf-8")
    assert_clean_error(run("ingest", str(docs / "broken.md")), 2, "broken.md")
    assert not run.db.exists()


def test_a_bad_file_after_good_ones_names_what_was_ingested(run: Cli, docs: Path) -> None:
    (docs / "zz-last.md").write_text("# Only a heading\n", encoding="utf-8")
    result = run("ingest", "--mode", "sync", str(docs / "refunds.md"), str(docs / "zz-last.md"))
    assert_clean_error(result, 2, "zz-last.md", "1 earlier file(s) were ingested")
    assert rows(run.db, "documents") == 1


def test_only_unsupported_files_is_a_usage_error(run: Cli, docs: Path) -> None:
    result = run("ingest", str(docs / "notes" / "picture.png"))
    assert_clean_error(result, 2, "nothing to ingest")
    assert "skipped" in result.stderr and not run.db.exists()


# --- keys (exit 3) --------------------------------------------------------------------


def test_missing_online_key_names_the_variable(run: Cli, docs: Path) -> None:
    result = run("ingest", str(docs), env={"GEMINI_API_KEY": None})
    assert_clean_error(result, 3, "GEMINI_API_KEY")
    result = run("search", "refund", env={"GEMINI_API_KEY": None})
    assert_clean_error(result, 3, "GEMINI_API_KEY")
    assert not run.db.exists()


def test_missing_batch_key_names_the_variable(run: Cli, docs: Path) -> None:
    without = {"GEMINI_BATCH_API_KEY": None}
    for args in (["ingest", "--mode", "async", str(docs)], ["batch", "flush"], ["supervise"]):
        assert_clean_error(run(*args, env=without), 3, "GEMINI_BATCH_API_KEY")
    assert not run.db.exists()


def test_malformed_key_is_a_key_error(run: Cli, docs: Path) -> None:
    result = run("ingest", str(docs), env={"GEMINI_API_KEY": "two words"})
    assert_clean_error(result, 3, "malformed API key")
    assert "two words" not in result.output and not run.db.exists()


@pytest.fixture
def strict_url() -> Iterator[str]:
    """An emulator that accepts only other keys than the ones the tests send."""
    emulator = GeminiEmulator(api_keys=["the-only-good-key"])
    with emulator.serve() as url:
        yield url


def test_rejected_online_key(run: Cli, docs: Path, strict_url: str) -> None:
    result = run("ingest", "--mode", "sync", str(docs), base_url=strict_url)
    assert_clean_error(result, 3, "GEMINI_API_KEY", "API key not valid")
    assert not run.db.exists()  # the empty database it had opened is removed
    assert run("ingest", "--mode", "async", str(docs)).exit_code == 0
    assert_clean_error(run("search", "refund", base_url=strict_url), 3, "GEMINI_API_KEY")


def test_rejected_batch_key_writes_no_job(run: Cli, docs: Path, strict_url: str) -> None:
    assert run("ingest", "--mode", "async", str(docs)).exit_code == 0
    for args in (["batch", "flush", "--force"], ["batch", "sync"], ["supervise"]):
        result = run(*args, base_url=strict_url)
        assert_clean_error(result, 3, "GEMINI_BATCH_API_KEY")
    assert rows(run.db, "batch_jobs") == 0
    assert rows(run.db, "chunks") == 4


# --- provider unreachable (exit 4) ----------------------------------------------------


def test_unreachable_provider(run: Cli, docs: Path, closed_port_url: str) -> None:
    result = run("ingest", "--mode", "sync", str(docs), base_url=closed_port_url)
    assert_clean_error(result, 4, "cannot reach the provider", "--base-url")
    assert not run.db.exists()
    assert run("ingest", "--mode", "async", str(docs)).exit_code == 0
    for args in (["search", "refund"], ["batch", "flush", "--force"], ["batch", "sync"]):
        assert_clean_error(run(*args, base_url=closed_port_url), 4, "cannot reach")
    assert rows(run.db, "batch_jobs") == 0


# --- the database (exit 5) ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["stats"], ["jobs"], ["batch", "status"], ["batch", "sync"], ["search", "x"], ["supervise"]],
)
def test_missing_database_is_not_created(run: Cli, args: list[str]) -> None:
    assert_clean_error(run(*args), 5, "no database at")
    assert not run.db.exists()


def test_other_dimensions_are_refused(run: Cli, docs: Path) -> None:
    assert run("ingest", "--mode", "async", str(docs)).exit_code == 0
    result = run("--dimensions", "1536", "stats")
    assert_clean_error(result, 5, "--dimensions")


def test_not_a_database(run: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert_clean_error(run("stats", db=junk), 5)


# --- others ---------------------------------------------------------------------------


def test_emulator_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = invoke(["emulator", "--port", str(port)])
    assert_clean_error(result, 1, "cannot listen")


def test_keys_in_errors_are_never_echoed(run: Cli, docs: Path, strict_url: str) -> None:
    result = run("ingest", "--mode", "sync", str(docs), base_url=strict_url)
    assert ONLINE_KEY not in result.output and BATCH_KEY not in result.output
