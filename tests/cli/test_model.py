"""``--model``: a knowledge base on gemini-embedding-2 from the command line, against a
loopback emulator, on each durable engine."""

from __future__ import annotations

import json
from pathlib import Path

from asemantic.testing.emulator import GeminiEmulator
from tests.cli.conftest import Cli

G2 = ("--model", "gemini-embedding-2")


def test_ingest_async_sync_search_and_stats_with_gemini_embedding_2(
    engine_run: Cli, emulator: GeminiEmulator, docs: Path
) -> None:
    run = engine_run
    result = run(*G2, "ingest", "--mode", "async", str(docs / "refunds.md"))
    assert result.exit_code == 0, result.output
    assert run(*G2, "batch", "flush", "--force").exit_code == 0
    (job,) = emulator.batches
    assert job.model == "models/gemini-embedding-2"
    emulator.complete_all()
    assert run(*G2, "batch", "sync").exit_code == 0
    result = run(*G2, "ingest", "--mode", "sync", str(docs / "notes"), str(docs / "outage.md"))
    assert result.exit_code == 0, result.output
    hits = json.loads(run(*G2, "--json", "search", "how long does a refund take?").stdout)["hits"]
    assert hits[0]["source"].endswith("refunds.md")
    stats = json.loads(run(*G2, "stats", "--json").stdout)
    assert stats["chunks"] == {"READY": 3, "PENDING": 0, "FAILED": 0}
    assert stats["cost"]["pricing_usd_per_million_tokens"] == {"online": 0.20, "batch": 0.10}
    human = run(*G2, "stats").stdout
    assert "$0.20" in human and "$0.10" in human


def test_the_model_must_match_the_database(engine_run: Cli, docs: Path) -> None:
    run = engine_run
    assert run(*G2, "ingest", "--mode", "sync", str(docs / "refunds.md")).exit_code == 0
    result = run("search", "refund")  # the default model, gemini-embedding-001
    assert result.exit_code == 5, result.output
    assert "--model" in result.stderr


def test_an_unknown_model_is_refused_before_anything_runs(run: Cli) -> None:
    result = run("--model", "text-embedding-004", "stats")
    assert result.exit_code == 2
    assert "text-embedding-004" in result.output and "gemini-embedding-2" in result.output
    assert not run.db.exists()
