"""An emulator of the Gemini Developer API for tests and offline runs.

It serves what asemantic uses, under ``/v1beta`` only (other versions get Google's HTML
404): resumable upload (``POST /upload/v1beta/files``), files get/list/delete,
download (``files/{id}:download?alt=media`` and ``/download/v1beta/...``, generated
files only), ``models/{m}:asyncBatchEmbedContent``, batches get/list/cancel/delete, and
the synchronous ``models/{m}:batchEmbedContents`` and ``models/{m}:embedContent``.

In-process, with the real SDK (no network; the transports serve
``http://emulator.invalid``, where the upload session URL also points)::

    emulator = GeminiEmulator()
    client = genai.Client(api_key="test-key", vertexai=False,
                          http_options=emulator.http_options())

Over loopback (``with`` works too)::

    async with emulator.serve() as base_url:
        client = genai.Client(api_key="test-key", vertexai=False,
                              http_options=HttpOptions(base_url=base_url, api_version="v1beta"))

From a shell: ``python -m asemantic.testing.emulator --port 8765 --api-key K
--job-seconds 1`` prints its base URL and serves until SIGINT/SIGTERM.

Time: jobs go PENDING -> RUNNING -> SUCCEEDED on the emulator's clock (a
:class:`ManualClock` by default: :meth:`GeminiEmulator.advance`,
:meth:`GeminiEmulator.complete_all`); a job not done 48 h after creation ends EXPIRED;
files vanish 48 h after creation.

Faults: ``emulator.faults.add(...)`` takes :class:`Fault` (HTTP errors, 429s with
``QuotaFailure`` and ``RetryInfo``, latency, a response lost after the change was
applied, dropped connections, a download that stalls) for an endpoint named in
:data:`ENDPOINTS`, :class:`JobFault` (FAILED/CANCELLED/EXPIRED), :class:`OddState`
(an undocumented state, or ``done`` with an error and no state), :class:`FileFault`
(an upload that stays PROCESSING, then FAILED or ACTIVE), :class:`LineFault`
(``{"error": ...}`` result lines) and :class:`ResultCorruption` (garbage, blank,
unknown-key, keyless, reordered or missing result lines). Settings of
:class:`GeminiEmulator` model the rest: an enqueued-token quota, upload processing
time, keyless results, dense (Google-sized) vectors, a transfer rate.

Transports: :class:`EmulatorTransport`, :class:`EmulatorAsyncTransport` (in-process
``httpx2``) and :class:`EmulatorServer` (loopback) serve any :class:`RequestHandler`
(``handle`` and ``handle_async`` from :class:`EmulatorRequest` to
:class:`EmulatorResponse`); the emulator is one, and builds them for itself.

Inspection: :attr:`GeminiEmulator.requests` (endpoint, key fingerprint, status, time,
fault), :meth:`GeminiEmulator.requests_with_key`, :meth:`GeminiEmulator.peak_in_flight`,
:attr:`GeminiEmulator.files`, :attr:`GeminiEmulator.batches`,
:meth:`GeminiEmulator.remote_leftovers`.

Where Google's behaviour is not documented the emulator takes the stricter reading, so
code that passes against it should not be surprised by Google:

- proto3 JSON: both ``camelCase`` and ``snake_case`` field names are accepted; unknown
  names are 400 INVALID_ARGUMENT (``Invalid JSON payload received. Unknown name ...``);
  ``done`` is omitted until true and ``batchStats`` lists only non-zero counts, as
  strings; listings carry no ``output``.
- A JSONL input file is checked when the job is created: lines of the wrong shape
  (``contents``, ``config`` ...) make creation fail with 400 ``Error on line N: invalid
  JSON, near column C: no such field: 'contents'`` (what Google answers); a file with no
  JSON line at all is accepted and the job ends FAILED. Too-long texts, a bad
  dimensionality or another model become per-line ``{"key", "error"}`` results.
- Per-line errors look like ``{"code": 400, "message": ..., "status":
  "INVALID_ARGUMENT"}``; a successful line is ``{"key", "response": {"embedding":
  {"values"}, "usageMetadata": {"promptTokenCount"}}}``.
- ``displayName`` is required to create a batch; cancelling a finished job is 400
  FAILED_PRECONDITION; an unknown file is 403 PERMISSION_DENIED ("... or it may not
  exist"); an unknown batch is 404.
- Models: ``gemini-embedding-001`` and ``gemini-embedding-2`` are served by default,
  each as Google documents it (:mod:`.embedding`): gemini-embedding-001 honours
  ``taskType``/``title`` and reads 2,048 tokens; gemini-embedding-2 ignores both
  fields (the task must be a prefix in the text) and reads 8,192 tokens. For both, the
  parts of one content are one text and one vector (a list of texts the SDK merged into
  one content comes back as one vector). Batch jobs work alike for both (an
  assumption: Google's batch support for gemini-embedding-2 is not verified).
- gemini-embedding-001: only 3,072-dimensional vectors are unit-length; smaller ones
  have a length between 0.3 and 0.9 that varies with the text. gemini-embedding-2:
  unit-length at every size.
"""

from __future__ import annotations

from asemantic.testing.emulator.cli import main
from asemantic.testing.emulator.clock import Clock, ManualClock, RealClock
from asemantic.testing.emulator.emulator import GeminiEmulator
from asemantic.testing.emulator.faults import (
    ENDPOINTS,
    Fault,
    FaultScript,
    FileFault,
    JobFault,
    LineFault,
    OddState,
    ResultCorruption,
)
from asemantic.testing.emulator.requestlog import RecordedRequest
from asemantic.testing.emulator.server import EmulatorServer
from asemantic.testing.emulator.state import BatchInfo, FileInfo, Leftovers
from asemantic.testing.emulator.transport import EmulatorAsyncTransport, EmulatorTransport
from asemantic.testing.emulator.wire import (
    DEFAULT_BASE_URL,
    EmulatorRequest,
    EmulatorResponse,
    Pace,
    RequestHandler,
)

__all__ = [
    "BatchInfo",
    "Clock",
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "EmulatorAsyncTransport",
    "EmulatorRequest",
    "EmulatorResponse",
    "EmulatorServer",
    "EmulatorTransport",
    "Fault",
    "FaultScript",
    "FileFault",
    "FileInfo",
    "GeminiEmulator",
    "JobFault",
    "Leftovers",
    "LineFault",
    "ManualClock",
    "OddState",
    "Pace",
    "RealClock",
    "RecordedRequest",
    "RequestHandler",
    "ResultCorruption",
    "main",
]
