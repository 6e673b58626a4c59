"""Reading a batch's requests: JSONL input files and inlined requests.

Decision (documented behaviour): a JSONL file is read when the job is created, the way
Google reports ``Error on line 1: invalid JSON, near column 1032: no such field:
'thinking_config'`` as a 400 from batch creation. So lines that are JSON objects but
not ``{"key", "request": EmbedContentRequest}`` (``contents`` plural, a ``config``
object ...) or lines that are not JSON make ``asyncBatchEmbedContent`` answer 400
INVALID_ARGUMENT listing the bad lines, and no job is created. A file in which *no*
line is JSON (not JSONL at all, or empty) is accepted and the job ends FAILED.
Semantic problems of a well-formed line (text too long, bad dimensionality, another
model) only show when the job runs, as an ``{"error": ...}`` result line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from asemantic.testing.emulator.proto import Violation, check, get
from asemantic.testing.emulator.rpc import bad_request
from asemantic.testing.emulator.schemas import BATCH_INPUT_LINE
from asemantic.testing.emulator.state import InputItem

__all__ = ["read_inline_requests", "read_jsonl"]

_MAX_REPORTED = 20


def read_jsonl(data: bytes) -> tuple[list[InputItem], bool]:
    """The requests of a JSONL file, and whether the file is unreadable as a whole.

    Raises :class:`~asemantic.testing.emulator.rpc.ApiError` (400) for bad lines.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], True
    items: list[InputItem] = []
    problems: list[str] = []
    parsed_any = False
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as error:
            problems.append(_line_error(number, error.colno, error.msg))
            continue
        parsed_any = True
        problem = _line_problem(number, raw, line)
        if problem:
            problems.append(problem)
        else:
            items.append(_item(len(items), line))
    if not parsed_any:
        return [], True
    if problems:
        raise bad_request(_capped(problems))
    return items, False


def read_inline_requests(requests: Sequence[Mapping[str, Any]]) -> list[InputItem]:
    """The requests of an ``inputConfig.requests.requests`` list (already checked)."""
    items = []
    for index, entry in enumerate(requests):
        metadata = get(entry, "metadata")
        key = metadata.get("key") if isinstance(metadata, Mapping) else None
        items.append(
            InputItem(
                index=index,
                key=key if isinstance(key, str) else None,
                request=get(entry, "request") or {},
                metadata=metadata,
            )
        )
    return items


def _item(index: int, line: Mapping[str, Any]) -> InputItem:
    key = line.get("key")
    return InputItem(
        index=index,
        key=key,
        request=line.get("request") or {},
        metadata=line.get("metadata"),
        has_key="key" in line,
    )


def _line_problem(number: int, raw: str, line: Any) -> str | None:
    if not isinstance(line, dict):
        return _line_error(number, 1, "a line must be a JSON object")
    violations = check(line, BATCH_INPUT_LINE)
    if not violations:
        return None
    return _describe(number, raw, violations[0])


def _describe(number: int, raw: str, violation: Violation) -> str:
    if violation.kind == "unknown":
        column = raw.find(f'"{violation.name}"') + 1 or 1
        return _line_error(number, column, f"no such field: '{violation.name}'")
    leaf = violation.path.rsplit(".", 1)[-1].split("[", 1)[0]
    column = raw.find(f'"{leaf}"') + 1 or 1
    return _line_error(number, column, f"invalid value for field '{violation.path}'")


def _line_error(number: int, column: int, what: str) -> str:
    return f"Error on line {number}: invalid JSON, near column {column}: {what}"


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= _MAX_REPORTED:
        return problems
    hidden = len(problems) - _MAX_REPORTED
    return [*problems[:_MAX_REPORTED], f"... and {hidden} more errors"]
