"""Reading a batch job from the raw ``google.longrunning.Operation`` JSON.

The SDK's ``BatchJob`` drops what an odd answer needs: the Operation's ``done`` and
``error`` (a ``google.rpc.Status``), and it warns on a state its enum lacks. So the batch
client reads batches get/list as JSON and maps them here, purely.

Decisions (the contract :class:`~asemantic.ports.RemoteJobStatus` documents):

* A known state (``BATCH_STATE_*`` or ``JOB_STATE_*``, any case) becomes the SDK's
  ``JOB_STATE_*`` name; ``done`` is true for SUCCEEDED, FAILED, CANCELLED and EXPIRED
  or when the Operation says ``done: true``.
* ``done: true`` with no known state (absent, UNSPECIFIED or unknown): an ``error``
  makes it ``JOB_STATE_FAILED``; otherwise a result file makes it
  ``JOB_STATE_SUCCEEDED`` (results are joined by key, and a chunk without a line goes
  back to the queue); with neither it is ``JOB_STATE_FAILED``. A finished job is never
  polled forever.
* Not done, with a state this version does not know: the name is kept (``BATCH_`` read
  as ``JOB_``), absent becomes ``JOB_STATE_UNSPECIFIED``; the domain reads both as
  unknown and the manager decides how long to keep polling.
* ``raw_state`` keeps the string as sent; error messages are cut to 500 characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asemantic.domain.jobs import RemoteState, parse_remote_state
from asemantic.ports import RemoteJobStatus

__all__ = ["NO_STATE_MESSAGE", "status_from_operation"]

NO_STATE_MESSAGE = "the job ended with no state, no error and no result file"
_DONE_STATES = frozenset(
    {RemoteState.SUCCEEDED, RemoteState.FAILED, RemoteState.CANCELLED, RemoteState.EXPIRED}
)


def status_from_operation(operation: Mapping[str, Any], *, name: str = "") -> RemoteJobStatus:
    """The :class:`RemoteJobStatus` of one Operation (``batches.get`` or a list entry)."""
    metadata = operation.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    raw = meta.get("state")
    raw_state = raw if isinstance(raw, str) and raw else None
    output = _output_file(meta) or _output_file(_mapping(operation.get("response")))
    code, message = _error(operation.get("error"))
    known = parse_remote_state(raw_state)
    operation_done = operation.get("done") is True
    if known is not None and known is not RemoteState.UNSPECIFIED:
        state = known.value
        done = operation_done or known in _DONE_STATES
    elif operation_done:
        done = True
        if code is not None or message is not None:
            state = RemoteState.FAILED.value
        elif output is not None:
            state = RemoteState.SUCCEEDED.value
        else:
            state, message = RemoteState.FAILED.value, NO_STATE_MESSAGE
    else:
        done = False
        state = _passthrough(raw_state)
    display = meta.get("displayName", meta.get("display_name"))
    return RemoteJobStatus(
        name=str(operation.get("name") or name),
        display_name=display if isinstance(display, str) else None,
        state=state,
        done=done,
        output_file=output,
        raw_state=raw_state,
        error_code=code,
        error_message=message,
    )


def _passthrough(raw_state: str | None) -> str:
    if raw_state is None:
        return RemoteState.UNSPECIFIED.value
    name = raw_state.strip().upper()
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        name = name.removeprefix(prefix)
    return f"JOB_STATE_{name}" if name else RemoteState.UNSPECIFIED.value


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _output_file(container: Mapping[str, Any]) -> str | None:
    output = container.get("output")
    source = output if isinstance(output, Mapping) else container
    value = source.get("responsesFile", source.get("responses_file"))
    return value if isinstance(value, str) and value else None


def _error(error: object) -> tuple[int | None, str | None]:
    if not isinstance(error, Mapping):
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        str(message)[:500] if message else (None if code is None else "the job failed"),
    )
