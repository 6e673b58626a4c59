"""What a route handler gets: the request, its path parameters and the remote state."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from asemantic.testing.emulator.faults import FaultScript
from asemantic.testing.emulator.proto import Message, check
from asemantic.testing.emulator.rpc import ApiError, bad_request
from asemantic.testing.emulator.state import EmulatorConfig, Store
from asemantic.testing.emulator.wire import EmulatorRequest

__all__ = ["Call", "paginate"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Call:
    """One routed request, handled under the emulator's lock."""

    request: EmulatorRequest
    params: Mapping[str, str]
    store: Store
    config: EmulatorConfig
    faults: FaultScript
    now: float

    @property
    def base_url(self) -> str:
        return self.request.base_url.rstrip("/")

    def json_body(self, message: Message) -> dict[str, Any]:
        """The body parsed as ``message``; 400 as Google words it when it is not."""
        raw = self.request.body
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise bad_request(["Invalid JSON payload received. Unexpected token."]) from error
        if not isinstance(value, dict):
            raise bad_request(
                [f"Invalid JSON payload received. Expected an object for {message.name}."]
            )
        violations = check(value, message)
        if violations:
            raise bad_request(
                [violation.message for violation in violations],
                [(violation.path, violation.message) for violation in violations],
            )
        return value


def paginate(
    items: Sequence[T],
    seq_of: Callable[[T], int],
    call: Call,
    *,
    default_size: int,
    max_size: int,
) -> tuple[list[T], str | None]:
    """One page of ``items`` (ordered newest first) and the token of the next page.

    Tokens are opaque and survive deletions between pages: they name the position
    after the last item returned.
    """
    size = _page_size(call.request.param("pageSize"), default_size, max_size)
    token = call.request.param("pageToken")
    if token:
        after = _decode_token(token)
        items = [item for item in items if seq_of(item) < after]
    page = list(items[:size])
    if len(items) > size:
        return page, _encode_token(seq_of(page[-1]))
    return page, None


def _page_size(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        message = f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\""
        raise bad_request([message], [("page_size", message)]) from None
    if size <= 0:
        return default
    return min(size, maximum)


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    padded = token + "=" * (-len(token) % 4)
    try:
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, binascii.Error):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "after" or not number.isdigit():
        raise ApiError(400, "Invalid page token.")
    return int(number)
