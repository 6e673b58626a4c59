"""Batch routes: ``asyncBatchEmbedContent`` and batches get, list, cancel, delete.

A batch is answered as a ``google.longrunning.Operation`` whose ``metadata`` is the
``EmbedContentBatch``, the way the live API does: proto3 JSON omits defaults, so
``done`` appears only once it is true and ``batchStats`` only lists non-zero counts
(int64 as strings). Listings leave out ``output`` and ``response``; get the batch to
read its results.
"""

from __future__ import annotations

from typing import Any

from asemantic.testing.emulator import jobs
from asemantic.testing.emulator.clock import format_timestamp
from asemantic.testing.emulator.context import Call, paginate
from asemantic.testing.emulator.embedding import item_tokens, model_name
from asemantic.testing.emulator.inputs import read_inline_requests, read_jsonl
from asemantic.testing.emulator.models_api import require_model
from asemantic.testing.emulator.proto import get
from asemantic.testing.emulator.rpc import (
    ApiError,
    bad_request,
    enqueued_tokens_quota,
    error_for_status,
)
from asemantic.testing.emulator.schemas import ASYNC_BATCH_EMBED_REQUEST
from asemantic.testing.emulator.state import BatchRecord, InputItem
from asemantic.testing.emulator.wire import EmulatorResponse

__all__ = [
    "cancel_batch",
    "create_batch",
    "delete_batch",
    "get_batch",
    "list_batches",
    "render_operation",
]

_TYPES = "type.googleapis.com/google.ai.generativelanguage.v1main"
BATCH_TYPE = f"{_TYPES}.EmbedContentBatch"
OUTPUT_TYPE = f"{_TYPES}.EmbedContentBatchOutput"


def render_operation(record: BatchRecord, *, with_output: bool = True) -> dict[str, Any]:
    """The Operation JSON of a batch."""
    metadata: dict[str, Any] = {
        "@type": BATCH_TYPE,
        "model": record.model,
        "displayName": record.display_name,
    }
    if record.source_file is not None:
        metadata["inputConfig"] = {"fileName": record.source_file}
    # (an odd job may show no state at all: ``state`` is then "")
    output = _output(record) if with_output else None
    if output is not None:
        metadata["output"] = output
    metadata["createTime"] = format_timestamp(record.create_time)
    metadata["updateTime"] = format_timestamp(record.update_time)
    if record.end_time is not None:
        metadata["endTime"] = format_timestamp(record.end_time)
    metadata["batchStats"] = _stats(record)
    if record.state:
        metadata["state"] = record.state
    metadata["name"] = record.name
    if record.priority:
        metadata["priority"] = str(record.priority)
    operation: dict[str, Any] = {"name": record.name, "metadata": metadata}
    if record.done:
        operation["done"] = True
        if output is not None:
            operation["response"] = {"@type": OUTPUT_TYPE, **output}
        elif record.error is not None and record.state != "BATCH_STATE_SUCCEEDED":
            operation["error"] = record.error
    elif record.odd_done and record.error is not None:
        operation["error"] = record.error
    return operation


def create_batch(call: Call) -> EmulatorResponse:
    """``POST /v1beta/models/{model}:asyncBatchEmbedContent``."""
    model = require_model(call, "asyncBatchEmbedContent")
    limit = call.config.max_inline_bytes
    if len(call.request.body) > limit:
        raise ApiError(400, f"Request payload size exceeds the limit: {limit} bytes.")
    batch = get(call.json_body(ASYNC_BATCH_EMBED_REQUEST), "batch")
    if not batch:
        raise bad_request(["* AsyncBatchEmbedContentRequest.batch: batch is required\n"])
    display_name = _check_batch(batch, model)
    source_file, items, unreadable = _inputs(call, get(batch, "inputConfig") or {})
    tokens = _check_quota(call, model, items)
    now = call.now
    pending, running = call.config.pending_seconds, call.config.running_seconds
    record = BatchRecord(
        batch_id=call.store.new_id(32),
        seq=call.store.next_seq(),
        model=model,
        display_name=display_name,
        priority=int(get(batch, "priority") or 0),
        source_file=source_file,
        items=items,
        unreadable=unreadable,
        create_time=now,
        start_at=now + pending,
        done_at=now + pending + running,
        expire_at=now + call.config.expire_after_seconds,
        plan=call.faults.take_job_plan(display_name),
        update_time=now,
        tokens=tokens,
    )
    call.store.batches[record.batch_id] = record
    return EmulatorResponse.of_json(200, render_operation(record))


def _check_quota(call: Call, model: str, items: list[InputItem]) -> int:
    """The job's tokens (0 without a quota); 429 when they would push the project's
    enqueued tokens (those of jobs not yet done) over ``enqueued_token_limit``."""
    limit = call.config.enqueued_token_limit
    if limit is None:
        return 0  # nothing counts them
    tokens = sum(item_tokens(item, model) for item in items)
    enqueued = sum(record.tokens for record in call.store.batches.values() if not record.done)
    if enqueued + tokens > limit:
        raise error_for_status(
            429,
            (
                "Resource has been exhausted (e.g. check quota): the batch would have "
                f"{enqueued + tokens} enqueued tokens; the limit is {limit}."
            ),
            retry_delay=call.config.quota_retry_delay,
            violation=enqueued_tokens_quota(model, limit),
        )
    return tokens


def get_batch(call: Call) -> EmulatorResponse:
    """``GET /v1beta/batches/{id}``."""
    return EmulatorResponse.of_json(200, render_operation(_lookup(call)))


def list_batches(call: Call) -> EmulatorResponse:
    """``GET /v1beta/batches?pageSize=&pageToken=`` (newest first; 10 a page, at most 1000)."""
    records = sorted(call.store.batches.values(), key=lambda record: -record.seq)
    page, token = paginate(records, lambda record: record.seq, call, default_size=10, max_size=1000)
    body: dict[str, Any] = {}
    if page:
        body["operations"] = [render_operation(record, with_output=False) for record in page]
    if token:
        body["nextPageToken"] = token
    return EmulatorResponse.of_json(200, body)


def cancel_batch(call: Call) -> EmulatorResponse:
    """``POST /v1beta/batches/{id}:cancel``: ends the job CANCELLED at once."""
    record = _lookup(call)
    if record.done:
        raise ApiError(
            400,
            f"Batch {record.name} is already in a terminal state ({record.state}) and "
            "cannot be cancelled.",
            status="FAILED_PRECONDITION",
        )
    jobs.cancel(record, call.now)
    return EmulatorResponse.of_json(200, {})


def delete_batch(call: Call) -> EmulatorResponse:
    """``DELETE /v1beta/batches/{id}``: forgets the job (its result file stays)."""
    record = _lookup(call)
    del call.store.batches[record.batch_id]
    return EmulatorResponse.of_json(200, {})


def _check_batch(batch: dict[str, Any], model: str) -> str:
    named = get(batch, "model")
    if named and model_name(str(named)) != model:
        raise bad_request(
            [f"* EmbedContentBatch.model: {model_name(str(named))} does not match {model}\n"]
        )
    display_name = get(batch, "displayName")
    if not display_name:
        raise bad_request(["* EmbedContentBatch.display_name: display_name is required\n"])
    return str(display_name)


def _inputs(call: Call, config: dict[str, Any]) -> tuple[str | None, list[InputItem], bool]:
    file_name = get(config, "fileName")
    inline = get(config, "requests")
    if file_name and inline is not None:
        raise bad_request(
            [
                "Invalid JSON payload received. Oneof field 'source' is already set. "
                "Cannot set 'requests'"
            ]
        )
    if file_name:
        return _file_inputs(call, str(file_name))
    requests = get(inline, "requests") if isinstance(inline, dict) else None
    if not requests:
        raise bad_request(
            ["* EmbedContentBatch.input_config: a file_name or inlined requests are required\n"]
        )
    return None, read_inline_requests(requests), False


def _file_inputs(call: Call, file_name: str) -> tuple[str, list[InputItem], bool]:
    if not file_name.startswith("files/"):
        raise bad_request(
            [f"* EmbedContentBatch.input_config.file_name: invalid name {file_name}\n"]
        )
    file_id = file_name.removeprefix("files/")
    record = call.store.files.get(file_id)
    if record is None:
        raise ApiError(
            403, f"You do not have permission to access the File {file_id} or it may not exist."
        )
    state = record.state(call.now)
    if state != "ACTIVE":
        raise ApiError(
            400,
            f"File {file_name} is not in an ACTIVE state (it is {state}).",
            status="FAILED_PRECONDITION",
        )
    items, unreadable = read_jsonl(record.data)
    return file_name, items, unreadable


def _lookup(call: Call) -> BatchRecord:
    record = call.store.batches.get(call.params["batch_id"])
    if record is None:
        raise ApiError(404, "Requested entity was not found.")
    return record


def _output(record: BatchRecord) -> dict[str, Any] | None:
    if record.state != "BATCH_STATE_SUCCEEDED":
        return None
    if record.output_file is not None:
        return {"responsesFile": record.output_file}
    return {"inlinedResponses": {"inlinedResponses": record.inline_output or []}}


def _stats(record: BatchRecord) -> dict[str, str]:
    counts = {"requestCount": len(record.items)}
    if not record.done:
        counts["pendingRequestCount"] = len(record.items)
    elif record.state == "BATCH_STATE_SUCCEEDED":
        counts["successfulRequestCount"] = record.succeeded_count
        counts["failedRequestCount"] = record.failed_count
    return {name: str(value) for name, value in counts.items() if value}
