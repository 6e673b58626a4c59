"""The :class:`GeminiEmulator`: remote state, clock, fault script and request log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from asemantic.testing.emulator import jobs
from asemantic.testing.emulator.clock import Clock, ManualClock
from asemantic.testing.emulator.context import Call
from asemantic.testing.emulator.embedding import (
    EmbedSpec,
    embedding_values,
    model_behaviour,
    model_name,
)
from asemantic.testing.emulator.faults import Fault, FaultScript
from asemantic.testing.emulator.requestlog import KeyFingerprinter, RecordedRequest, RequestLog
from asemantic.testing.emulator.routes import Route, match
from asemantic.testing.emulator.rpc import (
    ApiError,
    api_key_invalid,
    error_for_status,
    html_not_found,
    missing_api_key,
)
from asemantic.testing.emulator.server import EmulatorServer
from asemantic.testing.emulator.state import (
    BatchInfo,
    EmulatorConfig,
    FileInfo,
    Leftovers,
    Store,
)
from asemantic.testing.emulator.transport import EmulatorAsyncTransport, EmulatorTransport
from asemantic.testing.emulator.wire import (
    DEFAULT_BASE_URL,
    EmulatorRequest,
    EmulatorResponse,
    Pace,
)

if TYPE_CHECKING:
    from google.genai import types

__all__ = ["GeminiEmulator"]

logger = logging.getLogger(__name__)

_HOURS_48 = 48 * 3600.0
DEFAULT_MODELS = ("gemini-embedding-001", "gemini-embedding-2")
"""The models an emulator serves unless told otherwise."""


@dataclass(kw_only=True)
class _Pending:
    request: EmulatorRequest
    route: Route | None
    endpoint: str
    key: str | None
    early: EmulatorResponse | None
    fault: Fault | None
    latency: float
    executed: int | None = None
    """The status the change itself answered, when a fault then lost the response."""


def _described(pending: _Pending) -> str | None:
    """The fault of a request as logged; a lost response says what the change answered
    (``"response lost; executed 200"``: the change happened, the caller never heard)."""
    if pending.fault is None:
        return None
    text = pending.fault.describe()
    if pending.executed is not None:
        text += f"; executed {pending.executed}"
    return text


class GeminiEmulator:
    """An in-memory emulation of the Gemini Developer API's files, batches and embeddings.

    Point ``google-genai`` at it in-process with ``genai.Client(api_key=...,
    http_options=emulator.http_options())`` or over loopback with ``async with
    emulator.serve() as base_url``. It answers like Google (JSON shapes, state names,
    errors) and lets tests steer time (:meth:`advance`, :meth:`complete_all`), script
    faults (:attr:`faults`) and inspect what happened (:attr:`requests`,
    :attr:`files`, :attr:`batches`, :meth:`remote_leftovers`).

    Args:
        api_keys: Accept only these keys (others get 400 API_KEY_INVALID); by default
            any non-empty key is accepted. A missing key always gets 403. Keys are
            kept only as salted fingerprints.
        models: The embedding models served (default: ``gemini-embedding-001`` and
            ``gemini-embedding-2``, each with its own behaviour, see
            :mod:`.embedding`); others 404.
        clock: The emulated time (default: a :class:`ManualClock`).
        pending_seconds: How long a new job stays PENDING.
        running_seconds: How long it then stays RUNNING before it SUCCEEDS.
        expire_after_seconds: A job not done this long after creation ends EXPIRED.
        file_ttl_seconds: Files disappear this long after creation (``None``: never).
        base_url: The made-up base URL the in-process transports serve.
        seed: Seed of the (deterministic) resource ids.
        request_latency: Seconds every request takes (on top of scripted latency).
        file_processing_seconds: How long an upload stays ``PROCESSING`` before it is
            ``ACTIVE`` (a batch created from it meanwhile is 400 FAILED_PRECONDITION).
        enqueued_token_limit: The project's batch enqueued-token quota: a create that
            would push the tokens of unfinished jobs over it is 429 RESOURCE_EXHAUSTED
            with ``QuotaFailure`` and ``RetryInfo`` (``quota_retry_delay``). ``None``
            (default): no quota. Users report about 500k at Tier 1 and 5M at Tier 2.
        keyless_results: Result lines carry no ``key`` (order = input order).
        dense_vectors: Dense full-precision values (about 10 KB a line at 768d, like
            Google's) instead of the mostly-zero lexical ones (about 4 KB).
        transfer_rate: Bytes a second for downloads and upload data (``None``: at once).
        unknown_state: Jobs that would succeed show this undocumented state instead
            (``BATCH_STATE_PARTIALLY_SUCCEEDED`` ...) and never finish on their own.
        stateless_done: Jobs that would succeed end ``done: true`` with an ``error``
            and no state.
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        clock: Clock | None = None,
        pending_seconds: float = 10.0,
        running_seconds: float = 60.0,
        expire_after_seconds: float = _HOURS_48,
        file_ttl_seconds: float | None = _HOURS_48,
        base_url: str = DEFAULT_BASE_URL,
        seed: int = 0,
        request_latency: float = 0.0,
        file_processing_seconds: float = 0.0,
        enqueued_token_limit: int | None = None,
        quota_retry_delay: float = 60.0,
        keyless_results: bool = False,
        dense_vectors: bool = False,
        transfer_rate: float | None = None,
        unknown_state: str | None = None,
        stateless_done: bool = False,
    ) -> None:
        durations = (pending_seconds, running_seconds, request_latency, file_processing_seconds)
        if min(durations) < 0 or quota_retry_delay < 0:
            raise ValueError("durations must not be negative")
        if transfer_rate is not None and transfer_rate <= 0:
            raise ValueError("transfer_rate must be positive")
        if enqueued_token_limit is not None and enqueued_token_limit < 1:
            raise ValueError("enqueued_token_limit must be at least 1")
        self._fingerprint = KeyFingerprinter()
        self._api_keys = (
            None if api_keys is None else frozenset(self._fingerprint(key) for key in api_keys)
        )
        self._config = EmulatorConfig(
            models=tuple(model_name(model) for model in models),
            pending_seconds=pending_seconds,
            running_seconds=running_seconds,
            expire_after_seconds=expire_after_seconds,
            file_ttl_seconds=file_ttl_seconds,
            file_processing_seconds=file_processing_seconds,
            enqueued_token_limit=enqueued_token_limit,
            quota_retry_delay=quota_retry_delay,
            keyless_results=keyless_results,
            dense_vectors=dense_vectors,
            transfer_rate=transfer_rate,
            unknown_state=unknown_state,
            stateless_done=stateless_done,
        )
        self._clock: Clock = clock if clock is not None else ManualClock()
        self._store = Store(seed)
        self._faults = FaultScript()
        self._log = RequestLog(self._fingerprint)
        self._lock = threading.RLock()
        self._request_latency = request_latency
        self.base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        restricted = "any key" if self._api_keys is None else f"{len(self._api_keys)} keys"
        return f"GeminiEmulator(models={list(self._config.models)!r}, api_keys={restricted})"

    # -- handling requests ------------------------------------------------------------

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        """Answer one request (latency is a blocking sleep)."""
        pending = self._begin(request)
        if pending.latency:
            time.sleep(pending.latency)
        return self._finish(pending)

    async def handle_async(self, request: EmulatorRequest) -> EmulatorResponse:
        """Answer one request; always yields to the event loop once while in flight.

        The answer is computed in a worker thread: a poll that finishes a large job
        builds its result file then, and must not stall the caller's event loop.
        """
        pending = self._begin(request)
        try:
            await anyio.sleep(pending.latency)
        except BaseException:
            # The caller gave up (cancelled, timed out) before anything was applied.
            self._record(pending, 0)
            raise
        return await anyio.to_thread.run_sync(self._finish, pending)

    def intake_pace(self, method: str, path: str) -> Pace | None:
        """The pace upload data is read at (``transfer_rate``), for the transports."""
        rate = self._config.transfer_rate
        if rate is None or method != "POST" or not path.startswith("/upload/"):
            return None
        return Pace(rate=rate)

    def _begin(self, request: EmulatorRequest) -> _Pending:
        route = match(request)
        endpoint = route.endpoint if route else "unknown"
        key = request.header("x-goog-api-key") or request.param("key")
        early = html_not_found(request.path) if route is None else None
        if early is None and endpoint != "files.upload_chunk":
            early = self._authorise(key)
        fault = self._faults.take_request_fault(endpoint) if early is None else None
        latency = self._request_latency + (fault.latency if fault else 0.0)
        self._log.started(endpoint)
        return _Pending(
            request=request,
            route=route,
            endpoint=endpoint,
            key=key,
            early=early,
            fault=fault,
            latency=latency,
        )

    def _finish(self, pending: _Pending) -> EmulatorResponse:
        status = 500
        try:
            response = self._respond(pending)
            status = response.status
        finally:
            self._record(pending, status)
        logger.debug(
            "emulator answered a request", extra={"endpoint": pending.endpoint, "status": status}
        )
        return response

    def _record(self, pending: _Pending, status: int) -> None:
        self._log.finished(
            endpoint=pending.endpoint,
            method=pending.request.method,
            path=pending.request.path,
            key=pending.key,
            status=status,
            now=self._clock.now(),
            fault=_described(pending),
        )

    def _respond(self, pending: _Pending) -> EmulatorResponse:
        if pending.early is not None:
            return pending.early
        fault = pending.fault
        if fault is not None and not fault.lose_response:
            if fault.drop_connection:
                return EmulatorResponse.dropped()
            if fault.status:
                return self._fault_response(fault, fault.status, pending.endpoint)
        assert pending.route is not None
        response = self._execute(pending.route, pending.request)
        response = self._paced(response, pending)
        if fault is not None and fault.lose_response:
            pending.executed = response.status
            if fault.drop_connection:
                return EmulatorResponse.dropped()
            return self._fault_response(fault, fault.status or 503, pending.endpoint)
        return response

    def _execute(self, route: Route, request: EmulatorRequest) -> EmulatorResponse:
        with self._lock:
            now = self._settle()
            call = Call(
                request=request,
                params=route.params,
                store=self._store,
                config=self._config,
                faults=self._faults,
                now=now,
            )
            try:
                return route.handler(call)
            except ApiError as error:
                return error.response()
            except Exception:
                logger.exception("emulator handler failed", extra={"endpoint": route.endpoint})
                return error_for_status(500).response()

    def _paced(self, response: EmulatorResponse, pending: _Pending) -> EmulatorResponse:
        if pending.endpoint != "files.download" or response.status != 200:
            return response
        fault = pending.fault
        stall = fault.stall_after if fault is not None else None
        rate = fault.rate if fault is not None and fault.rate else self._config.transfer_rate
        if rate is None and stall is None:
            return response
        return replace(response, pace=Pace(rate=rate, stall_after=stall))

    def _authorise(self, key: str | None) -> EmulatorResponse | None:
        if not key:
            return missing_api_key().response()
        if self._api_keys is not None and self._fingerprint(key) not in self._api_keys:
            return api_key_invalid().response()
        return None

    @staticmethod
    def _fault_response(fault: Fault, status: int, endpoint: str) -> EmulatorResponse:
        error = error_for_status(status, fault.message, retry_delay=fault.retry_delay)
        if endpoint == "files.upload_chunk":
            # Without this header the SDK re-sends the chunk after sleeping 1, 2, 4 s.
            error.headers["x-goog-upload-status"] = "final"
        return error.response()

    def _settle(self) -> float:
        now = self._clock.now()
        for record in list(self._store.batches.values()):
            jobs.settle(record, self._store, self._config, now)
        self._store.purge_expired_files(now)
        return now

    # -- wiring the SDK ---------------------------------------------------------------

    def transport(self) -> EmulatorTransport:
        """An ``httpx2`` transport answering from this emulator (for sync clients)."""
        return EmulatorTransport(self)

    def async_transport(self) -> EmulatorAsyncTransport:
        """An ``httpx2`` async transport answering from this emulator."""
        return EmulatorAsyncTransport(self)

    def http_options(self, **extra: Any) -> types.HttpOptions:
        """``HttpOptions`` that route a ``genai.Client`` to this emulator in-process.

        Sets ``base_url``, ``api_version="v1beta"`` and the transports; ``extra`` adds
        or overrides fields (``retry_options=...``, ``timeout=...``).
        """
        from google.genai import types

        client_args = {**dict(extra.pop("client_args", None) or {}), "transport": self.transport()}
        async_args = {
            **dict(extra.pop("async_client_args", None) or {}),
            "transport": self.async_transport(),
        }
        fields: dict[str, Any] = {"base_url": self.base_url, "api_version": "v1beta", **extra}
        return types.HttpOptions(**fields, client_args=client_args, async_client_args=async_args)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        """A loopback HTTP server; use ``with`` or ``async with``, which give the base URL."""
        return EmulatorServer(self, host=host, port=port)

    # -- time -------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def now(self) -> datetime:
        """The emulated time."""
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    def advance(self, seconds: float) -> None:
        """Move a :class:`ManualClock` forward; jobs progress (and may expire)."""
        if not isinstance(self._clock, ManualClock):
            raise TypeError("advance() needs the emulator to use a ManualClock")
        with self._lock:
            self._clock.advance(seconds)
            self._settle()

    def complete_all(self) -> None:
        """Finish every job now: it SUCCEEDS (or ends as scripted) without moving time."""
        with self._lock:
            now = self._settle()
            for record in list(self._store.batches.values()):
                jobs.finish_now(record, self._store, self._config, now)

    # -- faults and the request log ---------------------------------------------------

    @property
    def faults(self) -> FaultScript:
        """The fault script; ``emulator.faults.add(Fault(endpoint="batches.get", status=429))``."""
        return self._faults

    @property
    def requests(self) -> tuple[RecordedRequest, ...]:
        """Every request so far, oldest first."""
        return self._log.entries()

    def requests_to(self, endpoint: str) -> tuple[RecordedRequest, ...]:
        """The requests to one endpoint (``"batches.get"`` ...)."""
        return tuple(entry for entry in self._log.entries() if entry.endpoint == endpoint)

    def requests_with_key(self, key: str) -> tuple[RecordedRequest, ...]:
        """The requests that carried API key ``key``."""
        return self._log.with_key(key)

    def key_fingerprint(self, key: str) -> str:
        """The fingerprint the request log shows for ``key``."""
        return self._fingerprint(key)

    def peak_in_flight(self, endpoint: str | None = None) -> int:
        """The most concurrent requests seen (to ``endpoint``, or overall)."""
        return self._log.peak_in_flight(endpoint)

    def clear_requests(self) -> None:
        """Forget the recorded requests and concurrency peaks."""
        self._log.clear()

    # -- remote state -----------------------------------------------------------------

    @property
    def files(self) -> tuple[FileInfo, ...]:
        """The files held now, oldest first."""
        with self._lock:
            self._settle()
            records = sorted(self._store.files.values(), key=lambda record: record.seq)
            return tuple(record.info() for record in records)

    @property
    def batches(self) -> tuple[BatchInfo, ...]:
        """The batch jobs held now (deleted ones are gone), oldest first."""
        with self._lock:
            self._settle()
            records = sorted(self._store.batches.values(), key=lambda record: record.seq)
            return tuple(record.info() for record in records)

    def batch(self, name: str) -> BatchInfo:
        """One batch job by name (``batches/...``); ``KeyError`` if unknown."""
        with self._lock:
            self._settle()
            return self._store.batches[name.removeprefix("batches/")].info()

    def file_content(self, name: str) -> bytes:
        """The bytes of a file (``files/...``), uploaded or generated."""
        with self._lock:
            self._settle()
            return self._store.files[name.removeprefix("files/")].data

    def remote_leftovers(self) -> Leftovers:
        """Files and batch jobs nobody deleted (falsy when there are none)."""
        return Leftovers(files=self.files, batches=self.batches)

    def embed(
        self,
        text: str,
        *,
        dimensions: int = 3072,
        task_type: str | None = None,
        title: str | None = None,
        model: str = "gemini-embedding-001",
    ) -> list[float]:
        """The vector the emulator returns for ``text`` (for expectations in tests), as
        ``model`` treats it (gemini-embedding-2 ignores ``task_type`` and ``title``)."""
        behaviour = model_behaviour(model)
        if not behaviour.task_fields:
            task_type = title = None
        spec = EmbedSpec(
            text=text,
            dimensions=dimensions,
            task_type=task_type,
            title=title,
            tokens=0,
            max_tokens=behaviour.max_tokens,
            unit=behaviour.unit_reduced,
        )
        return embedding_values(spec, dense=self._config.dense_vectors)
