"""``httpx2`` transports that answer from a :class:`RequestHandler` (the emulator), with
no network.

They serve any host, so the absolute ``X-Goog-Upload-URL`` the emulator returns (on the
host the client used, ``http://emulator.invalid`` by default) reaches it too.
"""

from __future__ import annotations

import httpx2

from asemantic.testing.emulator.wire import EmulatorRequest, EmulatorResponse, RequestHandler

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
        return _to_httpx(answer, request)


class EmulatorAsyncTransport(httpx2.AsyncBaseTransport):
    """Async transport; pass it as ``HttpOptions(async_client_args={"transport": ...})``."""

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler

    def __repr__(self) -> str:
        return "EmulatorAsyncTransport()"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        answer = await self._handler.handle_async(_to_emulator(request, body))
        return _to_httpx(answer, request)


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
