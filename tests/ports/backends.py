"""The BatchBackend implementations the contract suite runs over, and how to drive each.

A backend is a :class:`~asemantic.ports.BatchBackend`; its driver moves remote jobs
along (the port has no call for that: time passes at the provider) and scripts per-line
errors. A new implementation plugs in with one entry in :data:`BACKENDS` and a branch
in :func:`open_backend`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from asemantic.adapters.gemini.batch import GeminiBatchClient
from asemantic.domain.policy import RetryConfig
from asemantic.domain.space import EmbeddingSpace
from asemantic.keys import GoogleKeyring
from asemantic.ports import BatchBackend
from asemantic.testing.backend import MemoryBatchBackend
from asemantic.testing.emulator import GeminiEmulator, LineFault
from asemantic.testing.emulator.rpc import STATUS_NAMES

__all__ = [
    "BACKENDS",
    "BackendDriver",
    "EmulatorDriver",
    "MemoryDriver",
    "SPACE",
    "open_backend",
]

BACKENDS = ("memory", "gemini-emulator")
SPACE = EmbeddingSpace(dimensions=768)
PENDING_SECONDS = 10.0
RUNNING_SECONDS = 60.0


class BackendDriver(Protocol):
    """What a contract test needs beyond the port: the provider's side of things."""

    @property
    def backend(self) -> BatchBackend: ...

    def start_all(self) -> None:
        """Every PENDING job starts RUNNING."""

    def complete_all(self) -> None:
        """Every unfinished job SUCCEEDS, with its results written."""

    def fail_lines(self, keys: Sequence[str], *, code: int, message: str) -> None:
        """The results of ``keys`` in the next job created are errors (call before create)."""


@dataclass(frozen=True, slots=True)
class MemoryDriver:
    backend: MemoryBatchBackend

    def start_all(self) -> None:
        for name, job in self.backend.jobs.items():
            if job.state == "JOB_STATE_PENDING":
                self.backend.advance(name)

    def complete_all(self) -> None:
        self.backend.complete_all()

    def fail_lines(self, keys: Sequence[str], *, code: int, message: str) -> None:
        status = STATUS_NAMES.get(code, "UNKNOWN")
        self.backend.fail_lines(keys, code=code, status=status, message=message)


@dataclass(frozen=True, slots=True)
class EmulatorDriver:
    backend: GeminiBatchClient
    emulator: GeminiEmulator

    def start_all(self) -> None:
        self.emulator.advance(PENDING_SECONDS)

    def complete_all(self) -> None:
        self.emulator.complete_all()

    def fail_lines(self, keys: Sequence[str], *, code: int, message: str) -> None:
        self.emulator.faults.add(LineFault(code=code, keys=tuple(keys), message=message))


def open_backend(kind: str, tmp_path: Path) -> BackendDriver:
    """A fresh backend of ``kind`` (one of :data:`BACKENDS`) with its driver."""
    if kind == "memory":
        return MemoryDriver(MemoryBatchBackend(SPACE))
    if kind == "gemini-emulator":
        emulator = GeminiEmulator(pending_seconds=PENDING_SECONDS, running_seconds=RUNNING_SECONDS)
        client = GeminiBatchClient(
            GoogleKeyring("contract-default-key", batch_key="contract-batch-key"),
            space=SPACE,
            base_url=emulator.base_url,
            transport=emulator.async_transport(),
            retry=RetryConfig(attempts=2, initial_delay=0.0, max_delay=0.01, timeout=10.0),
            temp_dir=tmp_path,
        )
        return EmulatorDriver(client, emulator)
    raise ValueError(f"unknown backend {kind!r}")
