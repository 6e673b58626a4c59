"""The emulator's request log: who called what, with which key, answered how.

API keys are never stored: the log keeps a salted fingerprint, and tests compare
against a key they hold (:meth:`RequestLog.with_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["KeyFingerprinter", "RecordedRequest", "RequestLog"]


class KeyFingerprinter:
    """Turns API keys into short salted fingerprints (the salt is per emulator)."""

    def __init__(self) -> None:
        self._salt = os.urandom(16)

    def __repr__(self) -> str:
        return "KeyFingerprinter()"

    def __call__(self, key: str) -> str:
        digest = hmac.new(self._salt, key.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "key:" + digest.hexdigest()[:12]


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """One request the emulator answered (or dropped).

    ``endpoint`` is one of :data:`~asemantic.testing.emulator.ENDPOINTS` or
    ``"unknown"``; ``key_fingerprint`` is ``None`` when no key was sent; ``status`` is
    0 when the connection was dropped; ``time`` is the emulator's clock; ``fault``
    describes the injected fault, if any.
    """

    endpoint: str
    method: str
    path: str
    key_fingerprint: str | None
    status: int
    time: datetime
    fault: str | None = None

    @property
    def dropped(self) -> bool:
        return self.status == 0


class RequestLog:
    """Thread-safe record of requests and of concurrent in-flight requests."""

    def __init__(self, fingerprint: KeyFingerprinter) -> None:
        self._fingerprint = fingerprint
        self._lock = threading.Lock()
        self._entries: list[RecordedRequest] = []
        self._in_flight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._total_in_flight = 0
        self._total_peak = 0

    def __repr__(self) -> str:
        return f"RequestLog(entries={len(self._entries)})"

    def started(self, endpoint: str) -> None:
        """Count a request as in flight."""
        with self._lock:
            self._in_flight[endpoint] += 1
            self._peak[endpoint] = max(self._peak[endpoint], self._in_flight[endpoint])
            self._total_in_flight += 1
            self._total_peak = max(self._total_peak, self._total_in_flight)

    def finished(
        self,
        *,
        endpoint: str,
        method: str,
        path: str,
        key: str | None,
        status: int,
        now: float,
        fault: str | None,
    ) -> None:
        """Record a finished request and take it out of the in-flight count."""
        entry = RecordedRequest(
            endpoint=endpoint,
            method=method,
            path=path,
            key_fingerprint=self._fingerprint(key) if key else None,
            status=status,
            time=datetime.fromtimestamp(now, tz=UTC),
            fault=fault,
        )
        with self._lock:
            self._entries.append(entry)
            self._in_flight[endpoint] -= 1
            self._total_in_flight -= 1

    def entries(self) -> tuple[RecordedRequest, ...]:
        with self._lock:
            return tuple(self._entries)

    def with_key(self, key: str) -> tuple[RecordedRequest, ...]:
        """The requests that carried ``key``."""
        wanted = self._fingerprint(key)
        return tuple(entry for entry in self.entries() if entry.key_fingerprint == wanted)

    def peak_in_flight(self, endpoint: str | None = None) -> int:
        """The most requests (to ``endpoint``, or to any) that were in flight at once."""
        with self._lock:
            return self._total_peak if endpoint is None else self._peak[endpoint]

    def in_flight(self, endpoint: str | None = None) -> int:
        with self._lock:
            return self._total_in_flight if endpoint is None else self._in_flight[endpoint]

    def clear(self) -> None:
        """Forget recorded requests and peaks (in-flight counts stay)."""
        with self._lock:
            self._entries.clear()
            self._peak = Counter(self._in_flight)
            self._total_peak = self._total_in_flight
