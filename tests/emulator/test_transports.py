"""The transports serve any RequestHandler: they know the handler protocol, not the emulator."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx2
import pytest

from asemantic.testing import emulator as package
from asemantic.testing.emulator import (
    EmulatorAsyncTransport,
    EmulatorRequest,
    EmulatorResponse,
    EmulatorServer,
    EmulatorTransport,
    GeminiEmulator,
    RequestHandler,
)

TRANSPORT_MODULES = ("server.py", "transport.py")


class Echo:
    """A handler that is not the emulator: it answers with what it was asked."""

    def __init__(self) -> None:
        self.seen: list[EmulatorRequest] = []

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        self.seen.append(request)
        if request.path == "/drop":
            return EmulatorResponse.dropped()
        payload = {"method": request.method, "path": request.path, "body": request.body.decode()}
        return EmulatorResponse.of_json(201, payload, {"x-echo": request.header("x-in") or ""})

    async def handle_async(self, request: EmulatorRequest) -> EmulatorResponse:
        return self.handle(request)


@pytest.mark.parametrize("name", TRANSPORT_MODULES)
def test_transports_never_import_the_emulator_class(name: str) -> None:
    """Not at run time, not for type checking, not inside a function."""
    tree = ast.parse((Path(package.__file__).parent / name).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    assert not [i for i in imported if "emulator.emulator" in i or "GeminiEmulator" in i]
    assert "asemantic.testing.emulator.wire" in imported


async def test_the_emulator_is_a_request_handler() -> None:
    handler: RequestHandler = GeminiEmulator()  # mypy checks the protocol here
    request = EmulatorRequest(method="GET", path="/v1beta/files", headers={"X-Goog-Api-Key": "k"})
    assert handler.handle(request).status == 200
    assert (await handler.handle_async(request)).json() == {}


def test_the_sync_transport_serves_any_handler() -> None:
    echo = Echo()
    with httpx2.Client(transport=EmulatorTransport(echo), base_url="http://any.invalid") as client:
        response = client.post("/v1beta/x?key=k", content=b"hi", headers={"X-In": "1"})
        assert (response.status_code, response.headers["x-echo"]) == (201, "1")
        assert response.json() == {"method": "POST", "path": "/v1beta/x", "body": "hi"}
        with pytest.raises(httpx2.RemoteProtocolError):
            client.get("/drop")
    assert echo.seen[0].base_url == "http://any.invalid"
    assert echo.seen[0].query == (("key", "k"),)


async def test_the_async_transport_serves_any_handler() -> None:
    transport = EmulatorAsyncTransport(Echo())
    async with httpx2.AsyncClient(transport=transport, base_url="http://any.invalid") as client:
        response = await client.put("/v1beta/y", content=b"there")
    assert response.status_code == 201
    assert response.json() == {"method": "PUT", "path": "/v1beta/y", "body": "there"}


def test_the_loopback_server_serves_any_handler() -> None:
    echo = Echo()
    with EmulatorServer(echo) as base_url, httpx2.Client(base_url=base_url) as client:
        response = client.delete("/v1beta/z")
        assert response.status_code == 201
        assert response.json() == {"method": "DELETE", "path": "/v1beta/z", "body": ""}
    assert echo.seen[0].base_url == base_url
