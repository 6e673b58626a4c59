"""Batch job lifecycle on the emulator's clock, and the results a finished job produces.

A job is PENDING for ``pending_seconds``, RUNNING for ``running_seconds``, then
SUCCEEDED (or the outcome a :class:`~asemantic.testing.emulator.JobFault` scripted).
A job still not done ``expire_after_seconds`` (48 h) after creation ends EXPIRED.
Results are computed at the moment the job succeeds, timestamped with that moment.

Decisions:

* Result files are built fast: vectors by the cached lexical features of
  :mod:`.embedding`, each line serialised by orjson straight from the NumPy array (the
  values Python's ``json`` would print, without the float-by-float ``repr``).
* A plain file job (no line faults, corruption or dense vectors) is rendered a block
  of requests at a time straight to bytes (:func:`render_lines`): only bytes outlive a
  block, so building it leaves the garbage collector nothing big to walk (a full
  collection holds the GIL and stalls the event loop of a caller polling in-process),
  and the file is one ``bytes.join`` (which releases the GIL). Tests hold its bytes to
  the general path's.
* An :class:`~asemantic.testing.emulator.OddState` (or the emulator's
  ``unknown_state``/``stateless_done`` settings) replaces the success: the job shows an
  undocumented state (or none) and produces no results; done, it carries an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from asemantic.testing.emulator.embedding import (
    EmbedSpec,
    RequestProblem,
    check_tokens,
    embed_many,
    embedding_array,
    embedding_arrays,
    read_request,
)
from asemantic.testing.emulator.faults import LineFault, OddState, ResultCorruption
from asemantic.testing.emulator.rpc import line_status
from asemantic.testing.emulator.state import (
    BatchRecord,
    EmulatorConfig,
    FileRecord,
    InputItem,
    Store,
)

__all__ = ["cancel", "finish_now", "settle", "spread"]

_OPERATION_ERRORS = {
    # google.rpc.Code numbers, as in a google.longrunning.Operation's ``error``.
    "BATCH_STATE_CANCELLED": (1, "The batch was cancelled."),
    "BATCH_STATE_EXPIRED": (4, "The batch expired: it did not finish within 48 hours."),
    "BATCH_STATE_FAILED": (13, "The batch failed."),
}


@dataclass(frozen=True, kw_only=True)
class _Result:
    item: InputItem
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def settle(record: BatchRecord, store: Store, config: EmulatorConfig, now: float) -> None:
    """Move ``record`` to the state it has at ``now``."""
    if record.done:
        return
    if record.expire_at <= record.done_at and now >= record.expire_at:
        _end(record, "BATCH_STATE_EXPIRED", record.expire_at, store, config)
    elif record.odd:
        if now >= record.expire_at:
            _end(record, "BATCH_STATE_EXPIRED", record.expire_at, store, config)
    elif now >= record.done_at:
        odd = _odd_state(record, config)
        if odd is not None and _final_state(record) == "BATCH_STATE_SUCCEEDED":
            _go_odd(record, odd, record.done_at)
        else:
            _end(record, _final_state(record), record.done_at, store, config)
    elif now >= record.start_at and record.state == "BATCH_STATE_PENDING":
        record.state = "BATCH_STATE_RUNNING"
        record.update_time = record.start_at


def finish_now(record: BatchRecord, store: Store, config: EmulatorConfig, now: float) -> None:
    """End ``record`` at ``now`` as if its run time were up."""
    if record.done:
        return
    record.start_at = min(record.start_at, now)
    record.done_at = min(record.done_at, now)
    settle(record, store, config, now)


def cancel(record: BatchRecord, now: float) -> None:
    """Cancel ``record`` at once (Gemini has no CANCELLING state)."""
    record.odd = False
    record.state = "BATCH_STATE_CANCELLED"
    record.end_time = record.update_time = now
    code, message = _OPERATION_ERRORS["BATCH_STATE_CANCELLED"]
    record.error = {"code": code, "message": message}


def spread(total: int, fraction: float) -> list[int]:
    """Indexes of ``fraction`` of ``total`` items, spread evenly (0.5 -> 1, 3, 5 ...)."""
    return [i for i in range(total) if int((i + 1) * fraction) > int(i * fraction)]


def _odd_state(record: BatchRecord, config: EmulatorConfig) -> OddState | None:
    if record.plan.odd_state is not None:
        return record.plan.odd_state
    if config.stateless_done:
        return OddState(state=None, done=True)
    if config.unknown_state:
        return OddState(state=config.unknown_state)
    return None


def _go_odd(record: BatchRecord, odd: OddState, at: float) -> None:
    record.odd = True
    record.state = odd.state or ""
    record.update_time = at
    if odd.done:
        record.odd_done = True
        record.end_time = at
        record.error = {"code": 13, "message": odd.message or "The batch failed."}


def _final_state(record: BatchRecord) -> str:
    if record.plan.outcome is not None:
        return f"BATCH_STATE_{record.plan.outcome.outcome}"
    return "BATCH_STATE_FAILED" if record.unreadable else "BATCH_STATE_SUCCEEDED"


def _end(record: BatchRecord, state: str, at: float, store: Store, config: EmulatorConfig) -> None:
    record.state = state
    record.end_time = record.update_time = at
    if state == "BATCH_STATE_SUCCEEDED":
        _produce(record, store, config, at)
        return
    code, message = _OPERATION_ERRORS[state]
    if record.plan.outcome is not None and record.plan.outcome.message:
        message = record.plan.outcome.message
    elif record.unreadable and state == "BATCH_STATE_FAILED":
        code, message = 3, "The input file could not be read as JSON Lines."
    record.error = {"code": code, "message": message}


def _produce(record: BatchRecord, store: Store, config: EmulatorConfig, at: float) -> None:
    keyed = not config.keyless_results
    plain = not (record.plan.line_faults or record.plan.corruption or config.dense_vectors)
    if record.source_file is not None and plain:
        lines, failed = render_lines(record.items, record.model, keyed)
        record.failed_count = failed
        record.succeeded_count = len(lines) - failed
        data = b"\n".join([*lines, b""])  # one copy (bytes.join releases the GIL)
    else:
        results = _embed_all(record.items, record.model, config.dense_vectors)
        for fault in record.plan.line_faults:
            results = _apply_line_fault(results, fault)
        record.failed_count = sum(1 for result in results if result.error is not None)
        record.succeeded_count = len(results) - record.failed_count
        if record.source_file is None:
            record.inline_output = [_inline_entry(result) for result in results]
            return
        lines = _corrupt([_file_line(r, keyed) for r in results], record.plan.corruption)
        data = b"".join(line + b"\n" for line in lines)
    file_id = f"batch-{record.batch_id}"
    store.files[file_id] = FileRecord(
        file_id=file_id,
        seq=store.next_seq(),
        display_name=None,
        mime_type="application/jsonl",
        data=data,
        source="GENERATED",
        create_time=at,
        expire_time=None if config.file_ttl_seconds is None else at + config.file_ttl_seconds,
    )
    record.output_file = f"files/{file_id}"


def render_lines(items: Sequence[InputItem], model: str, keyed: bool) -> tuple[list[bytes], int]:
    """The result file's lines of ``items`` (no faults, lexical vectors) and how many
    are errors: exactly the bytes of the general path (:func:`_embed_all`, a dict per
    line, orjson), built a block at a time with no dict or record kept per line.

    Only bytes outlive a block, so a job of tens of thousands of lines adds few
    objects for the garbage collector to walk: a full collection holds the GIL for the
    whole walk (about 0.2 s at 30,000 lines) and stalled the caller's event loop.
    """
    lines: list[bytes] = []
    failed = 0
    for start in range(0, len(items), _BLOCK):
        block = items[start : start + _BLOCK]
        rendered: list[bytes | None] = [None] * len(block)
        specs: list[EmbedSpec] = []
        positions: list[int] = []
        for at, item in enumerate(block):
            try:
                specs.append(
                    read_request(
                        item.request, model=model, where="EmbedContentRequest", analyse_text=False
                    )
                )
                positions.append(at)
            except RequestProblem as problem:
                rendered[at] = _error_line(item, problem, keyed)
        ready: list[EmbedSpec] = []
        ready_at: list[int] = []
        for at, spec in zip(positions, embed_many(specs), strict=True):
            if spec.tokens > spec.max_tokens:
                try:
                    check_tokens(spec.tokens, spec.max_tokens)
                except RequestProblem as problem:
                    rendered[at] = _error_line(block[at], problem, keyed)
                continue
            ready.append(spec)
            ready_at.append(at)
        for at, spec, values in zip(ready_at, ready, embedding_arrays(ready), strict=True):
            item = block[at]
            head = b'{"key":' + orjson.dumps(item.key) + b"," if keyed and item.has_key else b"{"
            rendered[at] = b"%s%s%s%s%d}}}" % (
                head,
                b'"response":{"embedding":{"values":',
                orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY),
                b'},"usageMetadata":{"promptTokenCount":',
                spec.tokens,
            )
        failed += len(block) - len(ready)
        lines.extend(line for line in rendered if line is not None)
    return lines, failed


_BLOCK = 256


def _error_line(item: InputItem, problem: RequestProblem, keyed: bool) -> bytes:
    error = line_status(problem.code, problem.message)
    return _dumps(_file_line(_Result(item=item, error=error), keyed))


def _embed_all(items: list[InputItem], model: str, dense: bool) -> list[_Result]:
    """Every item's result: checked one by one, embedded all at once (:func:`embed_many`)."""
    results: list[_Result | None] = [None] * len(items)
    specs: list[EmbedSpec] = []
    positions: list[int] = []
    for at, item in enumerate(items):
        try:
            specs.append(
                read_request(
                    item.request, model=model, where="EmbedContentRequest", analyse_text=False
                )
            )
            positions.append(at)
        except RequestProblem as problem:
            results[at] = _Result(item=item, error=line_status(problem.code, problem.message))
    accepted: list[tuple[int, EmbedSpec]] = []
    for at, spec in zip(positions, embed_many(specs), strict=True):
        try:
            check_tokens(spec.tokens, spec.max_tokens)
        except RequestProblem as problem:
            results[at] = _Result(item=items[at], error=line_status(problem.code, problem.message))
            continue
        accepted.append((at, spec))
    ready = [spec for _, spec in accepted]
    arrays = (
        [embedding_array(spec, dense=True) for spec in ready] if dense else embedding_arrays(ready)
    )
    for (at, spec), values in zip(accepted, arrays, strict=True):
        response = {
            "embedding": {"values": values},
            "usageMetadata": {"promptTokenCount": spec.tokens},
        }
        results[at] = _Result(item=items[at], response=response)
    return [result for result in results if result is not None]


def _apply_line_fault(results: list[_Result], fault: LineFault) -> list[_Result]:
    chosen = set(spread(len(results), fault.fraction))
    wanted = set(fault.keys)
    error = line_status(fault.code, fault.message)
    return [
        replace(result, response=None, error=error)
        if index in chosen or _fault_key(result.item) in wanted
        else result
        for index, result in enumerate(results)
    ]


def _fault_key(item: InputItem) -> str:
    return item.key if item.key is not None else str(item.index)


def _inline_entry(result: _Result) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if result.error is not None:
        entry["error"] = result.error
    else:
        entry["response"] = _listed(result.response)
    if result.item.metadata is not None:
        entry["metadata"] = result.item.metadata
    return entry


def _listed(response: dict[str, Any] | None) -> dict[str, Any] | None:
    """``response`` with its vector as a list (for the JSON of inline results)."""
    if response is None:
        return None
    values = response["embedding"]["values"]
    return {**response, "embedding": {"values": values.tolist()}}


def _dumps(line: dict[str, Any]) -> bytes:
    return orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY)


def _file_line(result: _Result, keyed: bool = True) -> dict[str, Any]:
    line: dict[str, Any] = {}
    if keyed and result.item.has_key:
        line["key"] = result.item.key
    if result.error is not None:
        line["error"] = result.error
    else:
        line["response"] = result.response
    return line


def _corrupt(lines: list[dict[str, Any]], corruption: ResultCorruption | None) -> list[bytes]:
    if corruption is None:
        return [_dumps(line) for line in lines]
    if corruption.unknown_fields:
        lines = [{**line, "emulatorExtra": {"note": "an undocumented field"}} for line in lines]
    missing = set(corruption.missing_keys)
    lines = [line for line in lines if line.get("key") not in missing]
    if corruption.keyless_fraction:
        chosen = set(spread(len(lines), corruption.keyless_fraction))
        lines = [
            {k: v for k, v in line.items() if k != "key"} if index in chosen else line
            for index, line in enumerate(lines)
        ]
    if corruption.reverse:
        lines.reverse()
    dropped = set(spread(len(lines), corruption.missing_lines / max(len(lines), 1)))
    text = [_dumps(line) for index, line in enumerate(lines) if index not in dropped]
    sample = next((line["response"] for line in lines if "response" in line), None)
    extras = [
        _dumps({"key": f"unknown-key-{i}", "response": sample or {}})
        for i in range(corruption.unknown_key_lines)
    ]
    extras += [
        f'{{"key": "garbage-{i}", "response": {{"embedding": {{"values": [0.1, 0.2'.encode()
        for i in range(corruption.garbage_lines)
    ]
    extras += [b""] * corruption.blank_lines
    return _insert_spread(text, extras)


def _insert_spread(lines: list[bytes], extras: list[bytes]) -> list[bytes]:
    result = list(lines)
    count = len(extras)
    for position in range(count - 1, -1, -1):
        at = round((position + 1) * len(lines) / (count + 1))
        result.insert(at, extras[position])
    return result
