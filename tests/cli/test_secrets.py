"""API keys never appear in output, errors, logs or help, whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asemantic.testing.emulator import GeminiEmulator
from tests.cli.conftest import Cli, invoke

ONLINE = "AIzaDistinctOnline5e1c0ffee"
BATCH = "AIzaDistinctBatch9d2badcafe"
KEYS = {"GEMINI_API_KEY": ONLINE, "GEMINI_BATCH_API_KEY": BATCH}


@pytest.fixture
def strict_url() -> Iterator[str]:
    with GeminiEmulator(api_keys=["some-other-key"]).serve() as url:
        yield url


def _assert_no_key(text: str) -> None:
    for key in (ONLINE, BATCH):
        assert key not in text
        assert key[8:] not in text  # not even a tail of it


def test_keys_are_never_printed(
    run: Cli, docs: Path, strict_url: str, closed_port_url: str
) -> None:
    run.env.update(KEYS)
    seen: list[str] = []

    def go(*args: str, base_url: str | None = None) -> int:
        result = run(*args, base_url=base_url)
        seen.append(result.stdout + result.stderr)
        return result.exit_code

    assert go("--help") == 0 and go("ingest", "--help") == 0 and go("demo", "--help") == 0
    assert go("-vv", "ingest", "--mode", "sync", str(docs / "refunds.md")) == 0
    assert go("-vv", "ingest", "--mode", "async", str(docs)) == 0
    assert go("-vv", "batch", "flush", "--force") == 0
    assert go("-vv", "batch", "sync") == 0
    assert go("-vv", "search", "refund") == 0
    assert go("-vv", "--json", "jobs") == 0 and go("--json", "stats") == 0
    assert go("-vv", "search", "refund", base_url=strict_url) == 3
    assert go("-vv", "batch", "sync", base_url=strict_url) == 3
    assert go("-vv", "supervise", base_url=strict_url) == 3
    assert go("-vv", "search", "refund", base_url=closed_port_url) == 4
    assert go("-vv", "batch", "flush", "--force", base_url=closed_port_url) == 4
    for text in seen:
        _assert_no_key(text)
    assert any("DEBUG" in text for text in seen)  # -vv did log


def test_keys_given_as_flags_or_malformed_are_not_echoed(tmp_path: Path, docs: Path) -> None:
    db = str(tmp_path / "kb.db")
    results = [
        invoke(
            [
                "--api-key",
                ONLINE,
                "--batch-api-key",
                BATCH,
                "--db",
                db,
                "--base-url",
                "http://127.0.0.1:9",
                "search",
                "x",
            ]
        ),
        invoke(["--db", db, "ingest", str(docs)], env={"GEMINI_API_KEY": f"{ONLINE} {BATCH}"}),
        invoke(["--api-key", ONLINE, "--help"]),
        invoke(["--api-key", ONLINE, "emulator", "--help"]),
    ]
    assert [r.exit_code for r in results] == [5, 3, 0, 0]
    for result in results:
        _assert_no_key(result.stdout + result.stderr)
