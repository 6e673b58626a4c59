"""What the command line loads: async ingestion never calls the provider, so it must
not pay for the provider's SDK (google-genai takes a second or more to import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import BATCH_KEY, ONLINE_KEY

_SCRIPT = """
import sys
from asemantic.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="asemantic", standalone_mode=False)
finally:
    loaded = sorted(m for m in sys.modules if m.startswith("google.genai"))
    print("GENAI-LOADED" if loaded else "GENAI-UNLOADED")
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"GEMINI_API_KEY": ONLINE_KEY, "GEMINI_BATCH_API_KEY": BATCH_KEY, "PATH": "/usr/bin"}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, "--db", str(tmp_path / "kb.db"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def test_async_ingest_leaves_google_genai_unloaded(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Refunds\n\nRefunds take five days.\n", encoding="utf-8")
    result = _run(tmp_path, "ingest", str(docs), "--mode", "async", "--json")
    assert result.returncode == 0, result.stderr
    assert '"chunks_pending": 1' in result.stdout
    assert result.stdout.rstrip().endswith("GENAI-UNLOADED")


def test_search_builds_the_embedder_and_loads_google_genai(tmp_path: Path) -> None:
    """The deferred embedder is the real one as soon as the provider is needed: a
    search embeds its query (here against an unreachable address: the call fails)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Refunds\n\nRefunds take five days.\n", encoding="utf-8")
    assert _run(tmp_path, "ingest", str(docs), "--mode", "async").returncode == 0
    result = _run(tmp_path, "--base-url", "http://127.0.0.1:9", "search", "refunds")
    assert "cannot reach the provider" in result.stderr
    assert result.stdout.rstrip().endswith("GENAI-LOADED")
