"""Clocks for the emulator: a manual one for tests, a real (optionally fast) one for servers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "RealClock", "format_timestamp"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the emulator's time, in POSIX seconds."""

    def now(self) -> float:
        """The current emulated time."""
        ...


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`).

    It starts at ``start`` (default: the current wall-clock second), so timestamps the
    emulator reports look current to code that compares them with the real time.
    """

    def __init__(self, start: datetime | float | None = None) -> None:
        if start is None:
            start = float(int(time.time()))
        elif isinstance(start, datetime):
            start = start.timestamp()
        self._now = float(start)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ManualClock(now={format_timestamp(self.now())!r})"

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += seconds


class RealClock:
    """Wall-clock time, optionally running ``speed`` times faster than real time.

    With ``speed=3600`` one real second is one emulated hour, so the 48-hour expiry of
    batch jobs can be seen in under a minute.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self._origin = time.time()
        self._monotonic = time.monotonic()

    def __repr__(self) -> str:
        return f"RealClock(speed={self._speed:g})"

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._monotonic) * self._speed


def format_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as Google's JSON timestamps look."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
