"""Parsing a batch result file without holding it in memory.

Each line is ``{"key": ..., "response": {"embedding": {"values": [...]}}}`` or
``{"key": ..., "error": {"code", "message", "status"}}`` (an error may also sit under
``response.error``). Results are joined by ``key``, never by position: a line without a
usable key, a key nobody asked for, a key seen twice, a blank line or a line that is not
JSON is counted and skipped. Lines are parsed with orjson and vectors packed with NumPy,
in slices, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Collection, Iterator
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
    """Yield parsed results from ``stream`` in lists of at most ``slice_size``."""
    seen: set[str] = set()
    batch: list[LineResult] = []
    for raw in stream:
        result = parse_line(raw, counts=counts, dimensions=dimensions)
        if result is None:
            continue
        if result.key not in expected_keys:
            counts.unknown_keys += 1
            continue
        if result.key in seen:
            counts.duplicates += 1
            continue
        seen.add(result.key)
        if result.vector is not None:
            counts.succeeded += 1
        else:
            counts.failed += 1
        batch.append(result)
        if len(batch) >= slice_size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_line(raw: bytes, *, counts: ResultCounts, dimensions: int | None) -> LineResult | None:
    """One result line, or None (counted as blank or malformed)."""
    if not raw.strip():
        counts.blank += 1
        return None
    counts.lines += 1
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        counts.malformed += 1
        return None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        counts.malformed += 1
        return None
    key: str = data["key"]
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
