"""``asemantic ingest PATH...``: Markdown and text files, folders recursively."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from asemantic.cli.context import AppContext, Need, json_option, pass_app
from asemantic.cli.errors import CliError, ExitCode, KeyHint, from_exception
from asemantic.cli.output import Output, relative, tokens
from asemantic.cli.progress import progress
from asemantic.domain.documents import Document, IngestResult
from asemantic.errors import AsemanticError, InvalidInputError
from asemantic.ingestion import MARKDOWN_SUFFIXES, TEXT_SUFFIXES, read_document
from asemantic.keys import GoogleKeyring

__all__ = ["FilePlan", "collect_files", "ingest"]

SUPPORTED = MARKDOWN_SUFFIXES | TEXT_SUFFIXES
MAX_NOTES = 10
MAX_TABLE_ROWS = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class FilePlan:
    """The files to ingest, and those skipped with the reason."""

    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Loaded:
    path: Path
    document: Document
    kind: str


def collect_files(paths: Sequence[Path]) -> FilePlan:
    """Files named, and files found below folders (hidden ones left out), in order."""
    seen: set[Path] = set()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        for candidate in _walk(path) if path.is_dir() else [path]:
            identity = candidate.resolve()
            if identity in seen:
                continue
            seen.add(identity)
            if candidate.suffix.lower() in SUPPORTED:
                files.append(candidate)
            else:
                skipped.append((candidate, f"unsupported type {candidate.suffix or '(none)'}"))
    return FilePlan(files=tuple(files), skipped=tuple(skipped))


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(names) if not name.startswith("."))
    return found


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["sync", "async", "auto"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="sync: embed now (online price). async: queue for the Batch API (half price, "
    "minutes to hours; needs the batch key). auto: async for large documents when a "
    "batch key is set, else sync.",
)
@json_option
@pass_app
def ingest(app: AppContext, paths: tuple[Path, ...], mode: str) -> None:
    """Ingest Markdown (.md, .markdown) and text (.txt) files; folders recursively.

    Other files are skipped with a note, hidden files and folders silently. Every file
    is read and checked before the database is touched: a bad file writes nothing.
    Ingesting an unchanged file again costs nothing.
    """
    mode = mode.lower()
    keys = app.keyring(Need.BATCH if mode == "async" else Need.ONLINE)
    plan = collect_files(paths)
    _note_skipped(app, plan.skipped)
    if not plan.files:
        raise CliError(
            "nothing to ingest: no Markdown or text files in the given paths",
            code=ExitCode.USAGE,
            hint="asemantic reads .md, .markdown and .txt files",
        )
    loaded = _read_all(app, plan.files)
    app.key_hint = KeyHint.ONLINE
    assert keys is not None
    results = app.run(_ingest(app, keys, loaded, mode))
    sources = {item.path: item.document.source for item in loaded}
    _render(app, results, plan, sources)


def _note_skipped(app: AppContext, skipped: Sequence[tuple[Path, str]]) -> None:
    if app.output.json_mode:
        return
    for path, reason in skipped[:MAX_NOTES]:
        app.output.note(f"skipped {path}: {reason}")
    if len(skipped) > MAX_NOTES:
        app.output.note(f"skipped {len(skipped) - MAX_NOTES} more unsupported files")


def _read_all(app: AppContext, files: Sequence[Path]) -> list[_Loaded]:
    loaded: list[_Loaded] = []
    with progress(app.output, "reading", total=len(files), unit="files") as bar:
        for path in files:
            try:
                document, kind = read_document(path, title=None, metadata=None)
            except InvalidInputError as exc:
                message = _with_path(path, str(exc))
                raise CliError(
                    message,
                    code=ExitCode.USAGE,
                    hint="nothing was written; fix or leave out that file and run again",
                ) from None
            loaded.append(_Loaded(path=path, document=document, kind=kind))
            bar.advance(path.name)
    return loaded


async def _ingest(
    app: AppContext, keys: GoogleKeyring, loaded: Sequence[_Loaded], mode: str
) -> list[tuple[Path, IngestResult]]:
    results: list[tuple[Path, IngestResult]] = []
    async with app.core(need=Need.ONLINE, must_exist=False, keys=keys) as core:
        with progress(app.output, "ingesting", total=len(loaded), unit="files") as bar:
            items = [(item.document, item.kind) for item in loaded]
            try:
                stream = core.ingest_many(items, mode=mode, worker=True)
                async with contextlib.aclosing(stream) as ingested:
                    async for result in ingested:
                        path = loaded[len(results)].path
                        results.append((path, result))
                        bar.advance(path.name)
            except AsemanticError as exc:
                path = loaded[len(results)].path
                raise _partial_failure(app, exc, path, done=len(results)) from None
    return results


def _partial_failure(app: AppContext, exc: AsemanticError, path: Path, *, done: int) -> CliError:
    error = from_exception(exc, key_hint=app.key_hint, secrets=app.secrets)
    error.message = _with_path(path, error.message)
    if done:
        error.hint = (
            f"{done} earlier file(s) were ingested; running again skips unchanged files"
            + (f" ({error.hint})" if error.hint else "")
        )
    return error


def _with_path(path: Path, message: str) -> str:
    """``message``, naming ``path`` first unless it already names it."""
    if str(path) in message or str(path.resolve()) in message:
        return message
    return f"{path}: {message}"


def _row(path: Path, source: str, result: IngestResult) -> dict[str, Any]:
    return {
        "path": str(path),
        "source": source,
        "document_id": result.document_id,
        "mode": result.mode.value,
        "mode_reason": result.mode_reason,
        "chunks_stored": result.chunks_stored,
        "chunks_pending": result.chunks_pending,
        "chunks_unchanged": result.chunks_unchanged,
        "chunks_removed": result.chunks_removed,
        "tokens_embedded": result.tokens_embedded,
    }


def _table(out: Output, results: Sequence[tuple[Path, IngestResult]]) -> Table:
    table = out.table("file", "chunks", "new", "pending", "unchanged", "mode")
    for path, result in results:
        unchanged = result.chunks_stored == 0 and result.chunks_removed == 0
        table.add_row(
            relative(str(path)),
            str(result.chunks_stored + result.chunks_unchanged),
            str(result.chunks_stored),
            str(result.chunks_pending),
            str(result.chunks_unchanged),
            "unchanged" if unchanged else result.mode.value,
        )
    return table


def _render(
    app: AppContext,
    results: Sequence[tuple[Path, IngestResult]],
    plan: FilePlan,
    sources: Mapping[Path, str],
) -> None:
    rows = [_row(path, sources[path], result) for path, result in results]
    totals = {
        key: sum(int(row[key]) for row in rows)
        for key in (
            "chunks_stored",
            "chunks_pending",
            "chunks_unchanged",
            "chunks_removed",
            "tokens_embedded",
        )
    }
    out = app.output
    if out.json_mode:
        out.json(
            {
                "database": app.shown_db,
                "files": rows,
                "skipped": [{"path": str(p), "reason": r} for p, r in plan.skipped],
                "totals": {"files": len(rows), **totals},
            }
        )
        return
    if len(rows) <= MAX_TABLE_ROWS:
        out.print(_table(out, results))
    out.line(
        f"ingested {len(rows)} file(s) into {app.shown_db}: "
        f"{totals['chunks_stored']:,} new chunk(s)"
        f" ({totals['chunks_pending']:,} pending for the Batch API),"
        f" {totals['chunks_unchanged']:,} unchanged; "
        f"{tokens(totals['tokens_embedded'])} tokens embedded online"
    )
    if totals["chunks_pending"]:
        out.note(
            "pending chunks are embedded by 'asemantic supervise' "
            "(or 'asemantic batch flush' then 'asemantic batch sync')"
        )
