"""Output shape: help and exit codes, JSON everywhere, no ANSI in pipes, progress lines."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from asemantic.cli.commands.ingest import collect_files
from asemantic.cli.commands.search import parse_filters
from asemantic.cli.errors import ExitCode, KeyHint, from_exception
from asemantic.cli.output import count_line, snippet, usd
from asemantic.errors import (
    AuthenticationError,
    EmbeddingSpaceMismatchError,
    InputFileError,
    MissingBatchKeyError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    StoreError,
    SupervisorLeaseError,
)
from tests.cli.conftest import Cli, invoke


def test_help_documents_keys_and_exit_codes() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for text in (
        "GEMINI_API_KEY",
        "GEMINI_BATCH_API_KEY",
        "ASEMANTIC_DB",
        "Exit codes:",
        "3    API key problem",
        "4    provider unreachable",
        "5    database problem",
    ):
        assert text in result.stdout
    assert invoke([]).stdout == result.stdout  # no command: the help, exit 0
    assert invoke(["--version"]).exit_code == 0


def test_every_subcommand_has_help() -> None:
    for command in (
        "ingest",
        "search",
        "batch",
        "batch flush",
        "batch sync",
        "batch status",
        "jobs",
        "supervise",
        "stats",
        "emulator",
        "demo",
    ):
        result = invoke([*command.split(), "--help"])
        assert result.exit_code == 0 and "Usage: asemantic" in result.stdout, command


def test_json_everywhere_and_no_ansi_in_pipes(run: Cli, docs: Path) -> None:
    outputs: list[str] = []
    result = run("ingest", "--mode", "async", str(docs))
    outputs.append(result.output)
    for args in (
        ["stats"],
        ["jobs"],
        ["batch", "status"],
        ["batch", "flush", "--force"],
        ["batch", "sync"],
        ["search", "refund"],
    ):
        for position in ("before", "after"):
            argv = ["--json", *args] if position == "before" else [*args, "--json"]
            result = run(*argv)
            assert result.exit_code == 0, (args, result.output)
            assert isinstance(json.loads(result.stdout), dict), args
        human = run(*args)
        outputs.append(human.output)
    for text in outputs:
        assert "\x1b[" not in text


def test_plain_progress_lines_for_many_files(run: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        (folder / f"note-{i:02}.md").write_text(f"# Note {i}\n\nrefund note {i}\n")
    result = run("ingest", "--mode", "async", str(folder))
    assert result.exit_code == 0, result.output
    assert "ingesting: 12/12 files" in result.stderr
    assert "\x1b[" not in result.stderr
    quiet = run("--json", "ingest", "--mode", "async", str(folder))
    assert quiet.stderr == "" and json.loads(quiet.stdout)["totals"]["files"] == 12


# --- units ----------------------------------------------------------------------------


def test_parse_filters() -> None:
    assert parse_filters(["document_id=3", "team=search", "year=2026", 'tags=["a"]']) == {
        "document_id": 3,
        "team": "search",
        "year": 2026,
        "tags": ["a"],
    }
    assert parse_filters(["source=a.md", "source=b.md"]) == {"source": ["a.md", "b.md"]}
    assert parse_filters(["note=a=b"]) == {"note": "a=b"}
    assert parse_filters(["flag=true", "nothing=null"]) == {"flag": True, "nothing": None}
    for bad in (["x"], ["=1"], ["a=1", "a=2"], ["document_id=x"], ["source=3"]):
        with pytest.raises(click.BadParameter):
            parse_filters(bad)


def test_collect_files(docs: Path) -> None:
    plan = collect_files([docs, docs / "refunds.md"])
    names = [p.name for p in plan.files]
    assert names == ["outage.md", "refunds.md", "adr.markdown", "vacation.txt"]
    assert [(p.name, why) for p, why in plan.skipped] == [("picture.png", "unsupported type .png")]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MissingBatchKeyError(), ExitCode.AUTH),
        (AuthenticationError("nope", status=400), ExitCode.AUTH),
        (RateLimitError("slow down", status=429), ExitCode.UNREACHABLE),
        (ProviderUnavailableError("down"), ExitCode.UNREACHABLE),
        (ProviderRequestError("bad", status=400), ExitCode.FAILURE),
        (EmbeddingSpaceMismatchError("other space"), ExitCode.DATABASE),
        (StoreError("disk I/O error"), ExitCode.DATABASE),
        (InputFileError("a.pdf: unsupported"), ExitCode.USAGE),
        (SupervisorLeaseError("held"), ExitCode.FAILURE),
        (RuntimeError("kaboom!"), ExitCode.FAILURE),
    ],
)
def test_exit_code_mapping(error: Exception, code: ExitCode) -> None:
    failure = from_exception(error, key_hint=KeyHint.BATCH, secrets=["kaboom!"])
    assert failure.code is code and failure.hint
    assert "kaboom!" not in failure.message
    if code is ExitCode.AUTH and not isinstance(error, MissingBatchKeyError):
        assert failure.hint == KeyHint.BATCH.value


def test_formatting_helpers() -> None:
    assert usd(0.000111) == "$0.000111" and usd(1234.5) == "$1,234.50"
    assert count_line({"A": 1, "B": 0}, ["A", "B"]) == "A 1 · B 0"
    assert count_line({"A": 0}, ["A"], nonzero=True) == "none"
    assert snippet("word " * 100, limit=20).endswith(" …")
    assert snippet("short\n text") == "short text"
