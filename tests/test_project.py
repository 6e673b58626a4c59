"""Project-wide checks: public API shape, layering, lint and types."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import asemantic

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asemantic"

VENDOR = ("google", "aiosqlite", "sqlite_vec", "sqlean", "httpx", "httpx2", "respx")


def _modules() -> list[str]:
    names = ["asemantic"]
    for info in pkgutil.walk_packages(asemantic.__path__, "asemantic."):
        if ".__main__" not in info.name:
            names.append(info.name)
    return names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", _modules())
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_is_pure(path: Path) -> None:
    for imported in _imports(path):
        top = imported.split(".")[0]
        assert top not in VENDOR, f"{path.name} imports {imported}"
        assert top not in {"asyncio", "anyio", "sqlite3", "socket"}, f"{path.name}: {imported}"
        assert not imported.startswith(("asemantic.adapters", "asemantic.core")), imported


def test_vendor_sdks_only_in_adapters_and_testing() -> None:
    allowed = {"adapters", "testing"}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in allowed:
            continue
        for imported in _imports(path):
            top = imported.split(".")[0]
            assert top not in {"google", "aiosqlite", "sqlite_vec", "sqlean"}, (
                f"{relative} imports {imported}"
            )


def test_importing_the_package_leaves_google_genai_unloaded() -> None:
    """google-genai takes about a second to import: ``import asemantic`` and the CLI's
    ``--help`` must not pay it; the Gemini adapters load it on first use."""
    code = (
        "import sys, asemantic, asemantic.cli.app\n"
        "assert not [m for m in sys.modules if m.startswith('google.genai')], 'loaded'\n"
        "from asemantic import GeminiBatchClient, GeminiEmbedder\n"
        "assert 'google.genai' in sys.modules\n"
        "assert asemantic.GeminiEmbedder is GeminiEmbedder\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
