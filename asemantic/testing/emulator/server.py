"""A loopback HTTP server (stdlib ``ThreadingHTTPServer`` on a thread) for a
:class:`RequestHandler` (the emulator)."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio

from asemantic.testing.emulator.transport import intake_pace, paced_pieces
from asemantic.testing.emulator.wire import EmulatorRequest, RequestHandler

__all__ = ["EmulatorServer"]

logger = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes bursts of new connections wait for SYN retries.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: RequestHandler) -> None:
        super().__init__(address, _Handler)
        self.handler = handler
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (killed, timed out, cancelled) is normal
        here: logged at debug, not a traceback on stderr. Anything else is reported."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("emulator client went away: %s", type(error).__name__)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Close kept-alive client connections, so a stopped server answers nothing."""
        with self._open_lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("emulator connection was already closed")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _intake = None
    # Headers and body go out in separate writes: without TCP_NODELAY each small
    # response waits out the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes each request line (which may hold ?key=...) to stderr.
        logger.debug("emulator loopback request served")

    def _serve(self) -> None:
        split = urlsplit(self.path)
        self._intake = intake_pace(self.server.handler, self.command, unquote(split.path))
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = EmulatorRequest(
            method=self.command,
            path=unquote(split.path),
            query=tuple(parse_qsl(split.query, keep_blank_values=True)),
            headers=dict(self.headers.items()),
            body=self._body(),
            base_url=f"http://{host}",
        )
        answer = self.server.handler.handle(request)
        if answer.drop_connection:
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.pace is None:
            self.wfile.write(answer.body)
            return
        for piece, wait in paced_pieces(answer.body, answer.pace):
            if piece:
                self.wfile.write(piece)
                self.wfile.flush()
            time.sleep(wait)
        if answer.pace.stall_after is not None and answer.pace.stall_after < len(answer.body):
            self.close_connection = True

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return b""
        pace = self._intake
        if pace is None:
            return self.rfile.read(length)
        data = bytearray()
        while len(data) < length:
            piece = self.rfile.read(min(pace.piece, length - len(data)))
            if not piece:
                break
            data += piece
            time.sleep(pace.delay(len(piece)))
        return bytes(data)

    def _chunked_body(self) -> bytes:
        data = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(data)
            data.extend(self.rfile.read(size))
            self.rfile.readline()


class EmulatorServer:
    """A running loopback server; ``with``/``async with`` it to get its base URL.

    ``start()`` and ``stop()`` do the same by hand. Handlers run on threads, and
    scripted latency is a real sleep.
    """

    def __init__(self, handler: RequestHandler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._address = (host, port)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"EmulatorServer(base_url={self.base_url if self._server else None!r})"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (only while running)."""
        if self._server is None:
            raise RuntimeError("the emulator server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Bind, serve on a background thread and return the base URL."""
        if self._server is not None:
            raise RuntimeError("the emulator server is already running")
        self._server = _HTTPServer(self._address, self._handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gemini-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("gemini emulator serving", extra={"base_url": self.base_url})
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> str:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)
