"""Transport-neutral request and response values of the emulator, and the handler
protocol the transports serve.

Decisions:

* The transports (the in-process ``httpx2`` ones and the loopback server) depend on
  :class:`RequestHandler` only, never on :class:`~asemantic.testing.emulator.GeminiEmulator`:
  they translate HTTP to :class:`EmulatorRequest` and :class:`EmulatorResponse` back,
  and whatever answers is the handler's business. The emulator imports them, not the
  other way round, so there is no import cycle, and a test may serve a handler of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DEFAULT_BASE_URL", "EmulatorRequest", "EmulatorResponse", "Pace", "RequestHandler"]

#: The made-up host the in-process transports serve (``.invalid`` never resolves).
DEFAULT_BASE_URL = "http://emulator.invalid"


@dataclass(frozen=True, kw_only=True)
class EmulatorRequest:
    """One HTTP request as the emulator sees it.

    ``path`` is the decoded path without the query string, ``query`` the decoded query
    parameters in order, ``headers`` the headers with lower-cased names, and
    ``base_url`` the scheme and host the client used (``http://127.0.0.1:8080``); the
    emulator builds absolute URLs (upload sessions, file URIs) from it.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    base_url: str = DEFAULT_BASE_URL

    def __post_init__(self) -> None:
        lowered = {name.lower(): value for name, value in self.headers.items()}
        object.__setattr__(self, "headers", lowered)
        object.__setattr__(self, "method", self.method.upper())

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive name), or ``None``."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """The first query parameter called ``name``, or ``None``."""
        for key, value in self.query:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        # Headers and query may carry an API key: never show them.
        return f"EmulatorRequest(method={self.method!r}, path={self.path!r})"


@dataclass(frozen=True, kw_only=True)
class Pace:
    """How a body moves: at most ``rate`` bytes a second (None: at once), and, with
    ``stall_after``, not a byte more after that many (the connection stays open for
    ``stall_seconds``, then closes)."""

    rate: float | None = None
    stall_after: int | None = None
    stall_seconds: float = 3600.0
    piece: int = 16 * 1024

    def delay(self, size: int) -> float:
        """Seconds ``size`` bytes take at this pace."""
        return 0.0 if not self.rate else size / self.rate


@dataclass(frozen=True, kw_only=True)
class EmulatorResponse:
    """One HTTP response; ``drop_connection`` means: close without answering; ``pace``
    slows the body down (see :class:`Pace`)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop_connection: bool = False
    pace: Pace | None = None

    @classmethod
    def of_json(
        cls, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> EmulatorResponse:
        """A JSON response (UTF-8, the content type Google sends)."""
        merged = {"content-type": "application/json; charset=UTF-8", **(headers or {})}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status=status, headers=merged, body=body)

    @classmethod
    def dropped(cls) -> EmulatorResponse:
        """The connection closes before any response is sent."""
        return cls(status=0, drop_connection=True)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive name), or ``None``."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class RequestHandler(Protocol):
    """What the transports need from whatever answers their requests.

    A handler may also have ``intake_pace(method, path) -> Pace | None``: the transports
    then read that request's body at that pace (a slow link on the way in).
    """

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        """Answer one request, blocking (the sync transport and the loopback server)."""
        ...

    async def handle_async(self, request: EmulatorRequest) -> EmulatorResponse:
        """Answer one request on the event loop (the async transport)."""
        ...
