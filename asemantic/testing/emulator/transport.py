"""``httpx2`` transports that answer from a :class:`RequestHandler` (the emulator), with
no network.

They serve any host, so the absolute ``X-Goog-Upload-URL`` the emulator returns (on the
host the client used, ``http://emulator.invalid`` by default) reaches it too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx2

from asemantic.testing.emulator.wire import EmulatorRequest, EmulatorResponse, Pace, RequestHandler

__all__ = ["EmulatorAsyncTransport", "EmulatorTransport"]

_DROPPED = "Server disconnected without sending a response."


class EmulatorTransport(httpx2.BaseTransport):
    """Sync transport; pass it as ``HttpOptions(client_args={"transport": ...})``."""

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler

    def __repr__(self) -> str:
        return "EmulatorTransport()"

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        answer = self._handler.handle(_to_emulator(request, body))
        if answer.pace is not None and not answer.drop_connection:
            return httpx2.Response(
                answer.status,
                headers=[*answer.headers.items(), ("content-length", str(len(answer.body)))],
                content=_paced_sync(answer.body, answer.pace),
                request=request,
            )
        return _to_httpx(answer, request)


class EmulatorAsyncTransport(httpx2.AsyncBaseTransport):
    """Async transport; pass it as ``HttpOptions(async_client_args={"transport": ...})``."""

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler

    def __repr__(self) -> str:
        return "EmulatorAsyncTransport()"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        pace = intake_pace(self._handler, request.method, request.url.path)
        if pace is None:
            body = await request.aread()
        else:
            data = bytearray()
            async for piece in request.stream:  # type: ignore[union-attr]
                data += piece
                await anyio.sleep(pace.delay(len(piece)))
            body = bytes(data)
        answer = await self._handler.handle_async(_to_emulator(request, body))
        if answer.pace is not None and not answer.drop_connection:
            return httpx2.Response(
                answer.status,
                headers=[*answer.headers.items(), ("content-length", str(len(answer.body)))],
                content=_paced_async(answer.body, answer.pace),
                request=request,
            )
        return _to_httpx(answer, request)


def intake_pace(handler: RequestHandler, method: str, path: str) -> Pace | None:
    """The pace ``handler`` reads this request's body at, if it says."""
    ask = getattr(handler, "intake_pace", None)
    pace = ask(method, path) if callable(ask) else None
    return pace if isinstance(pace, Pace) else None


def paced_pieces(body: bytes, pace: Pace) -> Iterator[tuple[bytes, float]]:
    """``body`` in pieces, each with the seconds to wait after it; a stall is one last
    empty piece with ``stall_seconds``."""
    limit = len(body) if pace.stall_after is None else min(len(body), pace.stall_after)
    for start in range(0, limit, pace.piece):
        piece = body[start : min(start + pace.piece, limit)]
        yield piece, pace.delay(len(piece))
    if limit < len(body):
        yield b"", pace.stall_seconds


async def _paced_async(body: bytes, pace: Pace) -> AsyncIterator[bytes]:
    for piece, wait in paced_pieces(body, pace):
        if piece:
            yield piece
        await anyio.sleep(wait)
    if pace.stall_after is not None and pace.stall_after < len(body):
        raise httpx2.RemoteProtocolError("the emulator closed a stalled transfer")


def _paced_sync(body: bytes, pace: Pace) -> Iterator[bytes]:
    for piece, wait in paced_pieces(body, pace):
        if piece:
            yield piece
        time.sleep(wait)
    if pace.stall_after is not None and pace.stall_after < len(body):
        raise httpx2.RemoteProtocolError("the emulator closed a stalled transfer")


def _to_emulator(request: httpx2.Request, body: bytes) -> EmulatorRequest:
    url = request.url
    return EmulatorRequest(
        method=request.method,
        path=url.path,
        query=tuple(url.params.multi_items()),
        headers=dict(request.headers.items()),
        body=body,
        base_url=f"{url.scheme}://{url.netloc.decode('ascii')}",
    )


def _to_httpx(answer: EmulatorResponse, request: httpx2.Request) -> httpx2.Response:
    if answer.drop_connection:
        raise httpx2.RemoteProtocolError(_DROPPED, request=request)
    return httpx2.Response(
        answer.status,
        headers=list(answer.headers.items()),
        content=answer.body,
        request=request,
    )
