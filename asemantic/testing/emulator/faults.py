"""The fault script: errors, latency, lost responses, job outcomes and bad result lines.

Add faults with ``emulator.faults.add(...)``. They are consumed in the order they were
added, deterministically: a request takes the first :class:`Fault` that matches its
endpoint; a new batch job takes the first matching :class:`JobFault` and
:class:`ResultCorruption` and every matching :class:`LineFault`. Each use counts
against the fault's ``times``; a used-up fault is gone. A ``display_name`` is a glob
pattern (``"nightly-*"``), so jobs with generated names can be targeted.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AnyFault",
    "ENDPOINTS",
    "Fault",
    "FaultScript",
    "FileFault",
    "JobFault",
    "JobPlan",
    "LineFault",
    "OddState",
    "ResultCorruption",
]

#: Every endpoint name the emulator serves (also the names in the request log).
ENDPOINTS: tuple[str, ...] = (
    "files.upload_start",
    "files.upload_chunk",
    "files.get",
    "files.list",
    "files.delete",
    "files.download",
    "batches.create",
    "batches.get",
    "batches.list",
    "batches.cancel",
    "batches.delete",
    "models.batchEmbedContents",
    "models.embedContent",
)

JobOutcome = Literal["FAILED", "CANCELLED", "EXPIRED"]


def _check_times(times: int) -> None:
    if times < 1:
        raise ValueError("times must be at least 1")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """A fault on the next ``times`` calls of ``endpoint`` (``"*"``: any endpoint).

    - ``status`` alone: answer that error (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503
      UNAVAILABLE ... in Google's shape) and change nothing.
    - ``latency``: wait that many seconds first (a real sleep on the server, an async
      sleep in-process); combines with the others.
    - ``lose_response=True``: apply the call's change, then answer ``status`` (default
      503) or, with ``drop_connection=True``, close the connection without an answer.
    - ``drop_connection=True`` alone: close the connection before anything happens.
    - ``retry_delay``: add a ``google.rpc.RetryInfo`` detail to a 429 (which always
      carries ``google.rpc.QuotaFailure`` and ``google.rpc.Help``, as Google's do).
    - ``stall_after``: answer normally but stop sending the body after that many bytes
      (the connection stays open, silent): a stalled download.
    - ``rate``: send the body of a download at that many bytes a second.
    """

    endpoint: str
    status: int | None = None
    times: int = 1
    latency: float = 0.0
    lose_response: bool = False
    drop_connection: bool = False
    message: str | None = None
    retry_delay: float | None = None
    stall_after: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; known: {', '.join(ENDPOINTS)}")
        _check_times(self.times)
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error code (400-599)")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        if self.stall_after is not None and self.stall_after < 0:
            raise ValueError("stall_after must not be negative")
        effects = (self.status, self.latency, self.lose_response, self.drop_connection)
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if not any(effects) and self.stall_after is None and self.rate is None:
            raise ValueError(
                "a fault needs a status, a latency, lose_response, drop_connection or stall_after"
            )

    def describe(self) -> str:
        """A short label for the request log."""
        parts = []
        if self.latency:
            parts.append(f"latency {self.latency:g}s")
        if self.lose_response:
            parts.append("response lost")
        if self.drop_connection:
            parts.append("connection dropped")
        if self.status and not self.drop_connection:
            parts.append(f"status {self.status}")
        if self.stall_after is not None:
            parts.append(f"stalled after {self.stall_after} bytes")
        if self.rate is not None:
            parts.append(f"{self.rate:g} B/s")
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class JobFault:
    """The next ``times`` new jobs (or jobs named ``display_name``) end in ``outcome``.

    The job runs normally and then, when it would have succeeded, ends FAILED,
    CANCELLED or EXPIRED instead, with no results.
    """

    outcome: JobOutcome
    display_name: str | None = None
    times: int = 1
    message: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in ("FAILED", "CANCELLED", "EXPIRED"):
            raise ValueError("outcome must be FAILED, CANCELLED or EXPIRED")
        _check_times(self.times)


@dataclass(frozen=True, kw_only=True)
class LineFault:
    """Some result lines of the next ``times`` jobs become ``{"error": ...}`` with ``code``.

    Lines are chosen by ``keys`` (an inline request's key is its ``metadata.key``, or its
    zero-based position as a string) and by ``fraction``: that share of the lines,
    spread evenly (``fraction=0.5`` hits every second line). Use 400 for a permanent
    error, 429/500/503 for retryable ones.
    """

    code: int = 503
    keys: tuple[str, ...] = ()
    fraction: float = 0.0
    message: str | None = None
    display_name: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        if not self.keys and not self.fraction:
            raise ValueError("a line fault needs keys or a fraction")
        if not 400 <= self.code <= 599:
            raise ValueError("code must be an HTTP error code (400-599)")
        _check_times(self.times)


@dataclass(frozen=True, kw_only=True)
class ResultCorruption:
    """Malformed lines in the result file of the next ``times`` file-based jobs.

    ``garbage_lines`` truncated JSON lines, ``blank_lines`` empty lines and
    ``unknown_key_lines`` results for keys that were never sent are inserted, spread
    evenly; ``missing_keys`` and ``missing_lines`` (spread evenly) are left out;
    ``unknown_fields`` adds an undocumented field to every line; ``keyless_fraction`` of
    the lines (spread evenly; 1.0: all) lose their ``key``; ``reverse`` writes the lines
    in reverse order (out of input order, as users report for large jobs).
    """

    garbage_lines: int = 0
    blank_lines: int = 0
    unknown_key_lines: int = 0
    unknown_fields: bool = False
    missing_keys: tuple[str, ...] = ()
    missing_lines: int = 0
    keyless_fraction: float = 0.0
    reverse: bool = False
    display_name: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        counts = (self.garbage_lines, self.blank_lines, self.unknown_key_lines, self.missing_lines)
        if min(counts) < 0:
            raise ValueError("counts must not be negative")
        if not 0.0 <= self.keyless_fraction <= 1.0:
            raise ValueError("keyless_fraction must be between 0 and 1")
        others = (self.unknown_fields, self.missing_keys, self.keyless_fraction, self.reverse)
        if not (any(counts) or any(others)):
            raise ValueError("a result corruption needs at least one effect")
        _check_times(self.times)


@dataclass(frozen=True, kw_only=True)
class OddState:
    """The next ``times`` new jobs (or those named ``display_name``) answer oddly once
    they would have succeeded: ``state`` (a ``BATCH_STATE_*`` name this API does not
    document, such as ``BATCH_STATE_PARTIALLY_SUCCEEDED``; None: no ``state`` field at
    all) and, with ``done=True``, ``done: true`` with an ``error`` (code 13) but no
    results. Not done, the job stays in that state until cancelled or expired.
    """

    state: str | None = "BATCH_STATE_PARTIALLY_SUCCEEDED"
    done: bool = False
    message: str | None = None
    display_name: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        _check_times(self.times)


@dataclass(frozen=True, kw_only=True)
class FileFault:
    """The next ``times`` uploads (or those named ``display_name``) stay ``PROCESSING``
    for ``processing_seconds`` (emulated time) and then become ``FAILED`` when ``fails``,
    else ``ACTIVE``."""

    processing_seconds: float = 0.0
    fails: bool = True
    display_name: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.processing_seconds < 0:
            raise ValueError("processing_seconds must not be negative")
        _check_times(self.times)


AnyFault = Fault | JobFault | LineFault | ResultCorruption | OddState | FileFault


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    """What the fault script decided for one new job."""

    outcome: JobFault | None = None
    line_faults: tuple[LineFault, ...] = ()
    corruption: ResultCorruption | None = None
    odd_state: OddState | None = None


@dataclass
class _Entry:
    fault: AnyFault
    remaining: int


class FaultScript:
    """The scripted faults of one emulator (``emulator.faults``); thread-safe."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaultScript(pending={len(self.pending())})"

    def add(self, *faults: AnyFault) -> None:
        """Queue faults (after those already queued)."""
        with self._lock:
            for fault in faults:
                if not isinstance(
                    fault, Fault | JobFault | LineFault | ResultCorruption | OddState | FileFault
                ):
                    raise TypeError(f"not a fault: {fault!r}")
                self._entries.append(_Entry(fault, fault.times))

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._entries.clear()

    def pending(self) -> tuple[tuple[AnyFault, int], ...]:
        """The faults not yet used up, with how many uses each has left."""
        with self._lock:
            return tuple((entry.fault, entry.remaining) for entry in self._entries)

    def take_request_fault(self, endpoint: str) -> Fault | None:
        """Use the first :class:`Fault` for ``endpoint``, if any."""
        with self._lock:
            for entry in self._entries:
                fault = entry.fault
                if isinstance(fault, Fault) and fault.endpoint in (endpoint, "*"):
                    self._use(entry)
                    return fault
        return None

    def take_job_plan(self, display_name: str) -> JobPlan:
        """Use the faults that apply to a new job called ``display_name``."""
        with self._lock:
            outcome = self._take_first(JobFault, display_name)
            corruption = self._take_first(ResultCorruption, display_name)
            odd = self._take_first(OddState, display_name)
            line_faults = []
            for entry in list(self._entries):
                fault = entry.fault
                if isinstance(fault, LineFault) and _matches(fault.display_name, display_name):
                    line_faults.append(fault)
                    self._use(entry)
        return JobPlan(
            outcome=outcome if isinstance(outcome, JobFault) else None,
            line_faults=tuple(line_faults),
            corruption=corruption if isinstance(corruption, ResultCorruption) else None,
            odd_state=odd if isinstance(odd, OddState) else None,
        )

    def take_file_fault(self, display_name: str | None) -> FileFault | None:
        """Use the first :class:`FileFault` for an upload called ``display_name``."""
        with self._lock:
            fault = self._take_first(FileFault, display_name or "")
        return fault if isinstance(fault, FileFault) else None

    def _take_first(
        self,
        kind: type[JobFault] | type[ResultCorruption] | type[OddState] | type[FileFault],
        display_name: str,
    ) -> AnyFault | None:
        for entry in self._entries:
            fault = entry.fault
            if isinstance(fault, kind) and _matches(fault.display_name, display_name):
                self._use(entry)
                return fault
        return None

    def _use(self, entry: _Entry) -> None:
        entry.remaining -= 1
        if entry.remaining <= 0:
            self._entries.remove(entry)


def _matches(wanted: str | None, display_name: str) -> bool:
    return wanted is None or fnmatch.fnmatchcase(display_name, wanted)
