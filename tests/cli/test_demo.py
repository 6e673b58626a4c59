"""``asemantic demo``: offline, against the loopback emulator, twice, in seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import invoke

NO_KEYS = {"GEMINI_API_KEY": None, "GEMINI_BATCH_API_KEY": None}
EXPECTED_TOP = {
    "how do refunds work?": "samples/refunds-and-billing.md",
    "what happened during the payment outage?": "samples/incident-2026-03-payment-outage.md",
    "why did we reject postgres?": "samples/architecture-decisions.md",
}


def _command() -> list[str]:
    script = Path(sys.executable).parent / "asemantic"
    if script.exists():
        return [str(script)]
    found = shutil.which("asemantic")
    return [found] if found else [sys.executable, "-m", "asemantic.cli"]


def test_demo_console_script_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [*_command(), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "offline, against the Gemini emulator on http://127.0.0.1:" in out
    assert "SUBMITTED -> PROCESSING" in out and "PROCESSING -> COMPLETED" in out
    assert " 1. Refunds and billing" in out
    assert " 1. Incident report: payment outage" in out
    assert " 1. Architecture decisions" in out
    assert "PENDING 0 · FAILED 0" in out
    assert "saved by the batch route: $0.0" in out and "(50% of" in out
    assert "\x1b[" not in out and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing left in the current directory


def test_demo_runs_again_on_the_same_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = invoke(["--json", "demo", "--db", str(db)], env=NO_KEYS)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    pending = sum(row["chunks_pending"] for row in data["ingested"])
    assert data["idle"] and pending > 0
    assert data["chunks"] == {"READY": pending, "PENDING": 0, "FAILED": 0}
    assert [t["to"] for t in data["transitions"]][-1] == "COMPLETED"
    assert data["cost"]["savings_usd"] > 0
    assert round(data["cost"]["savings_percent"]) == 50
    tops = {s["query"]: s["hits"][0]["source"] for s in data["searches"]}
    assert tops == EXPECTED_TOP

    second = invoke(["--json", "demo", "--db", str(db)], env=NO_KEYS)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert all(row["chunks_pending"] == 0 for row in again["ingested"])  # unchanged
    assert again["transitions"] == [] and again["idle"]
    assert again["chunks"] == data["chunks"] and again["jobs"]["COMPLETED"] == 1
    assert {s["query"]: s["hits"][0]["source"] for s in again["searches"]} == EXPECTED_TOP
    assert again["cost"]["savings_usd"] == data["cost"]["savings_usd"]


def test_live_demo_needs_real_keys(tmp_path: Path) -> None:
    result = invoke(["--db", str(tmp_path / "x.db"), "demo", "--live"], env=NO_KEYS)
    assert result.exit_code == 3 and "GEMINI_API_KEY" in result.stderr
    assert not (tmp_path / "x.db").exists()
