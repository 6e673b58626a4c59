"""Every Python example in the README runs, against the emulator over loopback."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import asemantic.core
from asemantic import GeminiSettings
from asemantic.testing.emulator import GeminiEmulator, RealClock

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def emulator_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    emulator = GeminiEmulator(clock=RealClock(speed=600))
    with emulator.serve() as url:
        monkeypatch.setenv("GEMINI_API_KEY", "readme-default-key")
        monkeypatch.setenv("GEMINI_BATCH_API_KEY", "readme-batch-key")
        monkeypatch.setattr(
            asemantic.core, "GeminiSettings", functools.partial(GeminiSettings, base_url=url)
        )
        monkeypatch.chdir(tmp_path)
        yield url


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
@pytest.mark.timeout(120)
def test_readme_example_runs(
    index: int, emulator_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = BLOCKS[index]
    namespace: dict[str, object] = {"__name__": f"readme_example_{index}"}
    if "from fastapi" in code:
        testclient = pytest.importorskip("fastapi.testclient")
        exec(compile(code, f"README example {index}", "exec"), namespace)
        with testclient.TestClient(namespace["app"]) as client:
            response = client.get("/search", params={"q": "refund"})
        assert response.status_code == 200
        assert response.json() == []  # a fresh database: nothing to find yet
        return
    exec(compile(code, f"README example {index}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.strip(), "every example prints what it did"
    if "can I get my money back" in code:
        assert out.splitlines()[0].split()[1] == "handbook/refunds.md"
    if "wait_until_idle" in code and "on_transition" in code:
        assert "SUBMITTED -> PROCESSING" in out
        assert out.strip().endswith("handbook/vacation.md")
