"""Project-wide checks: public API shape, layering, lint and types.

The layering tests read imports with ``ast``, so they see what a module asks for
without running it. "Module level" means every import that runs when the module is
imported (top level, and inside module-level ``if``/``try``/``with`` blocks and class
bodies), but not under ``if TYPE_CHECKING:`` nor inside functions.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import pytest

import asemantic

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asemantic"

DOMAIN_THIRD_PARTY = frozenset({"transitions"})
"""The one third-party package ``domain/`` may import: ``transitions``, pure and
synchronous (no I/O, no threads, no event loop), which runs the BatchJob machine."""
DOMAIN_STDLIB_BANNED = frozenset(
    {"asyncio", "http", "selectors", "socket", "sqlite3", "ssl", "subprocess", "urllib"}
)
"""Standard-library modules that mean I/O or an event loop, which ``domain/`` is without."""
DOMAIN_KNOWN_VIOLATIONS: Mapping[str, str] = {}
"""Domain modules known to break the allow-list (strict xfail: fixing one fails the
test until its entry goes)."""

VENDOR_HOMES = frozenset({"adapters", "testing"})
VENDOR = frozenset(
    {
        "aiohttp",
        "aiosqlite",
        "google",
        "httpx",
        "httpx2",
        "numpy",
        "orjson",
        "respx",
        "sqlean",
        "sqlite_vec",
    }
)
"""Vendor SDKs, HTTP stacks and data libraries: imported only in asemantic/adapters and
asemantic/testing (``domain/`` has its own, stricter allow-list)."""


def _modules() -> list[str]:
    names = ["asemantic"]
    for info in pkgutil.walk_packages(asemantic.__path__, "asemantic."):
        if ".__main__" not in info.name:
            names.append(info.name)
    return names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES: Mapping[str, Path] = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            pending.extend(node.orelse)
            if not _is_type_checking(node):
                pending.extend(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            pending.extend(node.body)


def _everywhere(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions and under TYPE_CHECKING too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """The modules an import statement names, relative forms resolved.

    ``from pkg import name`` names ``pkg.name`` when that is a module of ours
    (``from . import jobs``), and ``pkg`` itself otherwise (an attribute of it).
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        package = module if SOURCES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return {
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base
        for alias in node.names
    }


def _imports(module: str, *, everywhere: bool = False) -> set[str]:
    tree = _parse(SOURCES[module])
    found: set[str] = set()
    for node in _everywhere(tree) if everywhere else _module_level(tree):
        found |= _targets(node, module)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each one imports at module level.

    A submodule's implicit import of its parent package is not an edge (Python runs the
    parent first, whatever the submodule says), so a package ``__init__`` that
    re-exports its submodules does not count as a cycle with each of them.
    """
    return {module: _imports(module) & SOURCES.keys() - {module} for module in SOURCES}


def _cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
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


def _domain_params() -> list[object]:
    params: list[object] = []
    for path in sorted((PACKAGE / "domain").glob("*.py")):
        reason = DOMAIN_KNOWN_VIOLATIONS.get(path.name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(_module_name(path), id=path.name, marks=marks))
    return params


def _domain_may_import(imported: str) -> bool:
    top = imported.partition(".")[0]
    if top in sys.stdlib_module_names:
        return top not in DOMAIN_STDLIB_BANNED
    return (
        top in DOMAIN_THIRD_PARTY
        or imported == "asemantic.errors"
        or imported == "asemantic.domain"
        or imported.startswith("asemantic.domain.")
    )


@pytest.mark.parametrize("module", _domain_params())
def test_domain_imports_only_the_allow_list(module: str) -> None:
    """domain/ imports the standard library (no I/O, no event loop), asemantic.domain,
    asemantic.errors and transitions, and nothing else, not even for type checking."""
    refused = sorted(i for i in _imports(module, everywhere=True) if not _domain_may_import(i))
    assert not refused, f"{module} imports {', '.join(refused)}"


def test_the_domain_allow_list_refuses_what_it_should() -> None:
    assert all(map(_domain_may_import, ["re", "enum", "transitions", "asemantic.domain.jobs"]))
    assert not any(
        map(
            _domain_may_import,
            ["asyncio", "numpy", "httpx2", "anyio", "asemantic.batch", "asemantic.ports"],
        )
    )


def test_vendor_sdks_only_in_adapters_and_testing() -> None:
    for module, path in SOURCES.items():
        folder = path.relative_to(PACKAGE).parts[0]
        if folder in VENDOR_HOMES or folder == "domain":
            continue
        vendors = sorted(i for i in _imports(module, everywhere=True) if i.split(".")[0] in VENDOR)
        assert not vendors, f"{module} imports {', '.join(vendors)}"


def test_product_code_never_imports_testing_at_module_level() -> None:
    """asemantic.testing (the emulator, the fakes) loads only when asked for: a function
    that needs it imports it there, so ``import asemantic`` and ``--help`` never pay it."""
    offenders = {
        module: sorted(i for i in _imports(module) if i.split(".")[:2] == ["asemantic", "testing"])
        for module in SOURCES
        if module.split(".")[:2] != ["asemantic", "testing"]
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def test_there_is_no_import_cycle() -> None:
    assert _cycles(_import_graph()) == []


def test_the_graph_resolves_relative_imports_and_finds_cycles() -> None:
    graph = _import_graph()
    assert "asemantic.testing.emulator.jobs" in graph["asemantic.testing.emulator.emulator"]
    assert "asemantic.domain.jobs" in graph["asemantic.domain.events"]
    assert "asemantic.batch.hooks" in graph["asemantic.batch.manager"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from . import jobs\nfrom .wire import X\nfrom .. import errors\n"
        "if TYPE_CHECKING:\n    import numpy\ndef f():\n    import google\n"
    )
    module = "asemantic.testing.emulator"
    found = set().union(*(_targets(node, module) for node in _module_level(tree)))
    assert found == {
        "asemantic.testing.emulator.jobs",
        "asemantic.testing.emulator.wire",
        "asemantic.testing",
    }


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
