"""An emulator of the Gemini Developer API for tests and offline runs.

It serves what asemantic uses: resumable file upload, files get/list/delete/download,
``asyncBatchEmbedContent`` with batches get/list/cancel/delete, and the synchronous
``batchEmbedContents``/``embedContent``, answering like Google (``v1beta`` only).

In-process, with the real SDK::

    emulator = GeminiEmulator()
    client = genai.Client(api_key="test-key", vertexai=False,
                          http_options=emulator.http_options())

Over loopback::

    async with emulator.serve() as base_url:
        client = genai.Client(api_key="test-key", vertexai=False,
                              http_options=HttpOptions(base_url=base_url, api_version="v1beta"))

Jobs move PENDING -> RUNNING -> SUCCEEDED on the emulator's clock
(:meth:`GeminiEmulator.advance`, :meth:`GeminiEmulator.complete_all`); faults are
scripted with ``emulator.faults.add(Fault(...), JobFault(...), LineFault(...),
ResultCorruption(...))``; every request is in :attr:`GeminiEmulator.requests`.
"""

from __future__ import annotations

from asemantic.testing.emulator.cli import main
from asemantic.testing.emulator.clock import Clock, ManualClock, RealClock
from asemantic.testing.emulator.emulator import GeminiEmulator
from asemantic.testing.emulator.faults import (
    ENDPOINTS,
    Fault,
    FaultScript,
    JobFault,
    LineFault,
    ResultCorruption,
)
from asemantic.testing.emulator.requestlog import RecordedRequest
from asemantic.testing.emulator.server import EmulatorServer
from asemantic.testing.emulator.state import BatchInfo, FileInfo, Leftovers
from asemantic.testing.emulator.transport import EmulatorAsyncTransport, EmulatorTransport
from asemantic.testing.emulator.wire import DEFAULT_BASE_URL, EmulatorRequest, EmulatorResponse

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "BatchInfo",
    "Clock",
    "EmulatorAsyncTransport",
    "EmulatorRequest",
    "EmulatorResponse",
    "EmulatorServer",
    "EmulatorTransport",
    "Fault",
    "FaultScript",
    "FileInfo",
    "GeminiEmulator",
    "JobFault",
    "Leftovers",
    "LineFault",
    "ManualClock",
    "RealClock",
    "RecordedRequest",
    "ResultCorruption",
    "main",
]
