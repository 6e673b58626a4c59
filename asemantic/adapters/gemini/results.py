"""Parsing a batch result file without holding it in memory.

Each line is ``{"key": ..., "response": {"embedding": {"values": [...]}}}`` or
``{"key": ..., "error": {"code", "message", "status"}}`` (an error may also sit under
``response.error``). A key nobody asked for, a key seen twice, a blank line or a line
that is not JSON is counted and skipped. Lines are parsed with orjson and vectors packed
with NumPy, in slices, so memory stays flat whatever the file's size.

Decisions:

* Results are joined by ``key``. A line without a usable key is matched by its position
  only when all of these hold: ``expected_keys`` is a sequence (the order the lines
  were sent), the file has exactly one non-blank line per expected key, and every keyed
  line sits at its own position. Google documents output order = input order, but users
  report exceptions; the checks make a reordered file fall back to "no match", never to
  a wrong vector. Unmatched keyless lines are counted (``keyless``) and skipped: their
  chunks get no result and the caller requeues them.
* The check needs the whole file, so keyless lines are resolved in a second pass over
  it (only their positions are kept in memory), after every keyed result was yielded.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Collection, Iterator, Sequence
from typing import IO, Any

import numpy as np
import orjson

from asemantic.ports import LineResult, ResultCounts

__all__ = ["iter_result_slices", "parse_line"]


def iter_result_slices(
    stream: IO[bytes],
    *,
    expected_keys: Collection[str],
    counts: ResultCounts,
    dimensions: int | None,
    slice_size: int = 256,
) -> Iterator[list[LineResult]]:
    """Yield parsed results from ``stream`` (seekable) in lists of at most ``slice_size``."""
    ordered = expected_keys if isinstance(expected_keys, Sequence) else None
    wanted = expected_keys if isinstance(expected_keys, set | frozenset) else set(expected_keys)
    seen: set[str] = set()
    batch: list[LineResult] = []
    keyless: list[int] = []
    in_order = ordered is not None
    position = -1
    for raw in stream:
        if not raw.strip():
            counts.blank += 1
            continue
        position += 1
        before = counts.keyless
        result = parse_line(raw, counts=counts, dimensions=dimensions)
        if counts.keyless != before:
            keyless.append(position)
            continue
        if result is None:
            continue
        if in_order and (
            ordered is None or position >= len(ordered) or ordered[position] != result.key
        ):
            in_order = False
        if _take(result, wanted, seen, counts):
            batch.append(result)
            if len(batch) >= slice_size:
                yield batch
                batch = []
    if keyless and in_order and ordered is not None and position + 1 == len(ordered):
        for result in _by_position(stream, keyless, ordered, counts, dimensions):
            if _take(result, wanted, seen, counts):
                counts.by_position += 1
                batch.append(result)
                if len(batch) >= slice_size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def _take(
    result: LineResult, wanted: Collection[str], seen: set[str], counts: ResultCounts
) -> bool:
    if result.key not in wanted:
        counts.unknown_keys += 1
        return False
    if result.key in seen:
        counts.duplicates += 1
        return False
    seen.add(result.key)
    if result.vector is not None:
        counts.succeeded += 1
    else:
        counts.failed += 1
    return True


def _by_position(
    stream: IO[bytes],
    positions: list[int],
    ordered: Sequence[str],
    counts: ResultCounts,
    dimensions: int | None,
) -> Iterator[LineResult]:
    """Second pass: the keyless lines at ``positions``, keyed by their place."""
    stream.seek(0)
    targets = iter(positions)
    target = next(targets, None)
    position = -1
    for raw in stream:
        if target is None:
            return
        if not raw.strip():
            continue
        position += 1
        if position != target:
            continue
        target = next(targets, None)
        scratch = ResultCounts()
        result = parse_line(raw, counts=scratch, dimensions=dimensions, key=ordered[position])
        counts.malformed += scratch.malformed
        if result is not None:
            yield result


def parse_line(
    raw: bytes, *, counts: ResultCounts, dimensions: int | None, key: str | None = None
) -> LineResult | None:
    """One result line, or None (counted as blank, malformed or keyless).

    ``key`` is the key to use when the line has none (matched by position); without it
    such a line is counted in ``keyless``.
    """
    if not raw.strip():
        counts.blank += 1
        return None
    counts.lines += 1
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        counts.malformed += 1
        return None
    if not isinstance(data, dict):
        counts.malformed += 1
        return None
    line_key = data.get("key")
    if not isinstance(line_key, str) or not line_key:
        if key is None:
            counts.keyless += 1
            return None
        line_key = key
    key = line_key
    error = _error_of(data)
    if error is not None:
        return _error_result(key, error)
    response = data.get("response")
    values = _values_of(response)
    if values is None or not isinstance(response, dict):
        counts.malformed += 1
        return None
    if dimensions is not None and len(values) != dimensions:
        return LineResult(
            key=key,
            error_code=500,
            error_status="INTERNAL",
            error_message=f"result has {len(values)} values, expected {dimensions}",
        )
    try:
        # struct packs a list of floats about twice as fast as np.asarray; NumPy then
        # checks the packed bytes (bools and ints pack too: JSON numbers are numbers).
        blob = _pack(len(values)).pack(*values)
    except struct.error:
        counts.malformed += 1
        return None
    if not np.isfinite(np.frombuffer(blob, dtype="<f4")).all():
        counts.malformed += 1
        return None
    return LineResult(key=key, vector=blob, token_count=_token_count(response))


@functools.lru_cache(maxsize=8)
def _pack(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}f")


def _token_count(response: dict[str, Any]) -> int | None:
    usage = response.get("usageMetadata")
    if isinstance(usage, dict):
        value = usage.get("promptTokenCount")
    else:
        value = response.get("tokenCount", response.get("token_count"))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _error_of(data: dict[str, Any]) -> dict[str, Any] | None:
    error = data.get("error")
    if error is None and isinstance(data.get("response"), dict):
        error = data["response"].get("error")
    return error if isinstance(error, dict) else None


def _error_result(key: str, error: dict[str, Any]) -> LineResult:
    code = error.get("code")
    return LineResult(
        key=key,
        error_code=code if isinstance(code, int) else None,
        error_status=str(error.get("status") or "") or None,
        error_message=str(error.get("message") or "unknown error")[:1000],
    )


def _values_of(response: object) -> list[Any] | None:
    if not isinstance(response, dict):
        return None
    embedding = response.get("embedding")
    if not isinstance(embedding, dict):
        return None
    values = embedding.get("values")
    return values if isinstance(values, list) and values else None
