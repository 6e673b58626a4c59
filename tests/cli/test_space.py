"""``asemantic space ...``: preview, migrate, supervise, switch, roll back, drop, on a
SQLite file through the loopback emulator."""

from __future__ import annotations

import json
from pathlib import Path

from asemantic.testing.emulator import GeminiEmulator, RealClock
from tests.cli.conftest import Cli, assert_clean_error


def _spaces(run: Cli, *global_args: str) -> dict[int, dict[str, object]]:
    result = run(*global_args, "space", "status", "--json")
    assert result.exit_code == 0, result.output
    return {int(s["id"]): s for s in json.loads(result.stdout)["spaces"]}


def test_a_migration_from_the_command_line(tmp_path: Path, docs: Path) -> None:
    emulator = GeminiEmulator(clock=RealClock(), pending_seconds=0.1, running_seconds=0.1)
    with emulator.serve() as url:
        run = Cli(db=tmp_path / "kb.db", base_url=url)
        assert run("ingest", "--mode", "sync", str(docs)).exit_code == 0
        planned = json.loads(run("space", "plan", "--to-dimensions", "1536", "--json").stdout)
        assert planned["chunks"] == 4 and planned["tokens"] > 0
        assert planned["cost_usd"]["batch"] * 2 == planned["cost_usd"]["online"]
        human = run("space", "plan", "--to-dimensions", "1536").stdout
        assert "batch" in human and "online" in human and "4 chunk(s)" in human

        migrated = run("space", "migrate", "--to-dimensions", "1536")
        assert migrated.exit_code == 0, migrated.output
        assert "space 2" in migrated.stdout and "4 chunk(s) queued" in migrated.stdout
        assert _spaces(run)[2]["state"] == "building"
        refused = run("space", "switch", "2")
        assert_clean_error(refused, 2, "lacks vectors for 4 chunk(s)")

        supervised = run(
            "supervise", "--until-idle", "--poll-interval", "0.2", "--min-batch-size", "1"
        )
        assert supervised.exit_code == 0, supervised.output
        spaces = _spaces(run)
        assert spaces[2]["state"] == "ready" and spaces[2]["ready"] == 4
        assert spaces[1]["state"] == "active"

        switched = run("space", "switch", "2")
        assert switched.exit_code == 0, switched.output
        assert "--dimensions 1536" in switched.stdout
        assert_clean_error(run("search", "refund"), 5, "1536")  # opened with 768
        found = json.loads(run("--dimensions", "1536", "search", "refund", "--json").stdout)
        assert found["hits"][0]["source"].endswith("refunds.md")

        assert_clean_error(run("space", "drop", "2"), 2, "active space")
        rolled = run("space", "rollback")
        assert rolled.exit_code == 0 and "space 1" in rolled.stdout
        found = json.loads(run("search", "refund", "--json").stdout)
        assert found["hits"][0]["source"].endswith("refunds.md")

        dropped = json.loads(run("space", "drop", "2", "--json").stdout)
        assert dropped == {"id": 2, "vectors_deleted": 4}
        assert _spaces(run)[2]["state"] == "retired"
        assert_clean_error(run("space", "switch", "2"), 2, "dropped")
    assert not emulator.remote_leftovers()


def test_bad_targets_are_refused_and_change_nothing(run: Cli, docs: Path) -> None:
    assert run("ingest", "--mode", "sync", str(docs)).exit_code == 0
    assert_clean_error(run("space", "plan", "--to-dimensions", "0"), 2, "dimensions")
    assert_clean_error(run("space", "migrate", "--to-dimensions", "9000"), 2, "dimensions")
    assert_clean_error(run("space", "migrate", "--to-dimensions", "768"), 2, "already")
    assert_clean_error(run("space", "switch", "7"), 2, "no embedding space 7")
    assert_clean_error(run("space", "rollback"), 2, "no earlier active space")
    assert_clean_error(run("space", "drop", "1"), 2, "active space")
    assert list(_spaces(run)) == [1]
