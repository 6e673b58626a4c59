"""The deferred flow through the command line, against a loopback emulator, on each
durable engine (the ``engine_run`` fixture: ``--db`` is a SQLite path or a PostgreSQL URL)."""

from __future__ import annotations

import json
from pathlib import Path

from asemantic.testing.emulator import GeminiEmulator
from tests.cli.conftest import Cli, rows

DOC_CHUNKS = 4  # four supported files, one chunk each


def test_async_ingest_flush_sync_search(
    engine_run: Cli, emulator: GeminiEmulator, docs: Path
) -> None:
    run = engine_run
    result = run("ingest", "--mode", "async", str(docs))
    assert result.exit_code == 0, result.output
    assert "ingested 4 file(s)" in result.stdout
    assert f"{DOC_CHUNKS} pending" in result.stdout
    assert "skipped" in result.stderr and "picture.png" in result.stderr
    assert "secret.md" not in result.output  # hidden folders are left out silently
    assert rows(run.where, "chunks") == DOC_CHUNKS

    status = json.loads(run("batch", "status", "--json").stdout)
    assert status["queued"] == DOC_CHUNKS and status["chunks"]["PENDING"] == DOC_CHUNKS

    result = run("batch", "flush")
    assert result.exit_code == 0 and "below --min-size 10: nothing flushed" in result.stdout
    result = run("batch", "flush", "--force")
    assert result.exit_code == 0, result.output
    assert "submitted 1 job(s) with 4 chunk(s)" in result.stdout
    assert [b.state for b in emulator.batches] == ["BATCH_STATE_PENDING"]

    synced = json.loads(run("--json", "batch", "sync").stdout)
    assert synced["polled"] == 1 and synced["completed"] == []
    assert synced["jobs"][0]["status"] == "SUBMITTED"
    emulator.advance(15)
    synced = json.loads(run("--json", "batch", "sync").stdout)
    assert synced["jobs"][0]["status"] == "PROCESSING"
    emulator.complete_all()
    result = run("batch", "sync")
    assert result.exit_code == 0, result.output
    assert "1 completed" in result.stdout and "READY 4" in result.stdout
    assert not emulator.remote_leftovers()

    _check_jobs_stats_and_search(run, docs)


def _check_jobs_stats_and_search(run: Cli, docs: Path) -> None:
    result = run("jobs")
    assert result.exit_code == 0 and "COMPLETED" in result.stdout
    listed = json.loads(run("jobs", "--json").stdout)
    assert listed["total"] == 1
    job = listed["jobs"][0]
    assert job["status"] == "COMPLETED" and job["stats"]["succeeded"] == DOC_CHUNKS

    stats = json.loads(run("stats", "--json").stdout)
    assert stats["documents"] == 4
    assert stats["chunks"] == {"READY": DOC_CHUNKS, "PENDING": 0, "FAILED": 0}
    assert stats["jobs"]["COMPLETED"] == 1
    assert stats["cost"]["tokens"]["batch"] > 0 and stats["cost"]["tokens"]["online"] == 0
    assert round(stats["cost"]["savings_percent"], 6) == 50.0
    human = run("stats").stdout
    assert "saved by the batch route" in human and "$0.075" in human

    result = run("search", "how long does a refund take?")
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("1. Refunds")
    found = json.loads(run("search", "refund", "-k", "2", "--json").stdout)
    assert [hit["rank"] for hit in found["hits"]] == [1, 2]
    assert found["hits"][0]["source"] == str((docs / "refunds.md").resolve())

    outage = docs / "outage.md"
    only = json.loads(run("search", "refund", "--filter", f"source={outage}", "--json").stdout)
    assert {hit["source"] for hit in only["hits"]} == {str(outage.resolve())}
    doc_id = only["hits"][0]["document_id"]
    by_id = json.loads(run("search", "card", "--filter", f"document_id={doc_id}", "--json").stdout)
    assert {hit["document_id"] for hit in by_id["hits"]} == {doc_id}
    others = json.loads(
        run("search", "card", "--filter", f'document_id={{"$ne": {doc_id}}}', "--json").stdout
    )
    assert others["hits"] and doc_id not in {hit["document_id"] for hit in others["hits"]}


def test_sync_ingest_is_searchable_at_once_and_idempotent(engine_run: Cli, docs: Path) -> None:
    run = engine_run
    result = run("ingest", "--mode", "sync", str(docs / "refunds.md"), str(docs / "notes"))
    assert result.exit_code == 0, result.output
    assert "ingested 2 file(s)" in result.stdout and "0 pending" in result.stdout
    again = json.loads(run("--json", "ingest", str(docs / "refunds.md")).stdout)
    assert again["totals"]["chunks_stored"] == 0 and again["totals"]["chunks_unchanged"] == 1
    assert again["files"][0]["mode_reason"] == "unchanged: nothing to embed"
    hits = json.loads(run("--json", "search", "vacation days").stdout)["hits"]
    assert hits[0]["source"].endswith("vacation.txt")
    stats = json.loads(run("--json", "stats").stdout)
    assert stats["cost"]["tokens"]["online"] > 0 and stats["cost"]["savings_usd"] == 0


def test_auto_mode_reports_its_choice(engine_run: Cli, docs: Path) -> None:
    run = engine_run
    data = json.loads(run("--json", "ingest", str(docs / "outage.md")).stdout)
    assert data["files"][0]["mode"] == "sync"
    assert data["files"][0]["mode_reason"].startswith("auto chose sync")


def test_batch_status_and_jobs_on_an_empty_queue(engine_run: Cli, docs: Path) -> None:
    run = engine_run
    assert run("ingest", "--mode", "sync", str(docs / "refunds.md")).exit_code == 0
    assert "no batch jobs yet" in run("jobs").stdout
    result = run("batch", "flush", "--force")
    assert result.exit_code == 0 and "nothing to flush" in result.stdout
    result = run("batch", "sync")
    assert result.exit_code == 0 and "polled 0 job(s)" in result.stdout


def test_search_mode_finds_pending_chunks_by_keyword(engine_run: Cli, docs: Path) -> None:
    run = engine_run
    assert run("ingest", "--mode", "async", str(docs / "refunds.md")).exit_code == 0
    vector = json.loads(run("--json", "search", "refund", "--mode", "vector").stdout)
    assert vector["mode"] == "vector" and vector["hits"] == []
    # Keyword search needs no key: it never embeds the query.
    result = run("--json", "search", "refund", "--mode", "keyword", env={"GEMINI_API_KEY": None})
    assert result.exit_code == 0, result.output
    keyword = json.loads(result.stdout)
    [hit] = keyword["hits"]
    assert hit["source"].endswith("refunds.md")
    assert hit["embedding_status"] == "PENDING" and hit["distance"] is None
    assert hit["found_by"] == ["keyword"] and hit["keyword_rank"] == 1
    hybrid = json.loads(run("--json", "search", "refund").stdout)
    assert hybrid["mode"] == "hybrid" and [h["chunk_id"] for h in hybrid["hits"]] == [
        hit["chunk_id"]
    ]
    shown = run("search", "refund", "--mode", "keyword").stdout
    assert "bm25" in shown and "keyword #1" in shown and "PENDING" in shown
    bad = run("search", "refund", "--mode", "semantic")
    assert bad.exit_code != 0 and "semantic" in bad.output
    empty = run("search", "!!!", "--mode", "keyword")
    assert empty.exit_code != 0 and "no words" in empty.output
