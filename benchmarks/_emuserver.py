"""A loopback emulator in its own process, steered over stdin, for timing HTTP calls.

Served in the benchmark's own process, the emulator's HTTP handler threads would take
the GIL from the client being timed: each call would also pay for the server's
request parsing. Here the server has its own interpreter (and core).

``python -m benchmarks._emuserver`` prints its base URL, then answers one line per
command read from standard input:

* ``latency ENDPOINT SECONDS TIMES``: forget faults and the request log, then hold the
  next ``TIMES`` calls of ``ENDPOINT`` for ``SECONDS``; answers ``ok``;
* ``peak ENDPOINT``: the most calls of ``ENDPOINT`` seen in flight at once;
* ``quit`` (or end of input): stop serving and exit.

With ``--fast-jobs`` its batch jobs run on the real clock and finish in about 30 ms
(for benchmarks that run a supervisor against it).

:class:`EmulatorProcess` starts one and sends the commands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

from asemantic.testing.emulator import Fault, GeminiEmulator, RealClock

__all__ = ["EmulatorProcess", "main"]

ROOT = Path(__file__).resolve().parents[1]


def answer(emulator: GeminiEmulator, command: list[str]) -> str:
    if command[0] == "latency":
        endpoint, seconds, times = command[1], float(command[2]), int(command[3])
        emulator.faults.clear()
        emulator.clear_requests()
        emulator.faults.add(Fault(endpoint=endpoint, latency=seconds, times=times))
        return "ok"
    if command[0] == "peak":
        return str(emulator.peak_in_flight(command[1]))
    return f"unknown command {command[0]!r}"


def main() -> None:
    if "--fast-jobs" in sys.argv[1:]:
        emulator = GeminiEmulator(clock=RealClock(), pending_seconds=0.01, running_seconds=0.02)
    else:
        emulator = GeminiEmulator()
    with emulator.serve() as url:
        print(url, flush=True)
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "quit":
                break
            print(answer(emulator, command), flush=True)


class EmulatorProcess:
    """``with EmulatorProcess() as emulator:`` a served emulator in a child process."""

    def __init__(self, *, fast_jobs: bool = False) -> None:
        self._fast_jobs = fast_jobs
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __repr__(self) -> str:
        return f"EmulatorProcess(base_url={self.base_url!r})"

    def __enter__(self) -> EmulatorProcess:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks._emuserver",
                *(["--fast-jobs"] if self._fast_jobs else []),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self._read()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            self._write(process, "quit")
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    @property
    def pid(self) -> int:
        """The emulator process's id (to place it on CPUs, for example)."""
        if self._process is None:
            raise RuntimeError("the emulator process is not running")
        return self._process.pid

    def command(self, *words: object) -> str:
        """Send one command; its one-line answer."""
        if self._process is None:
            raise RuntimeError("the emulator process is not running")
        self._write(self._process, " ".join(str(w) for w in words))
        return self._read()

    @staticmethod
    def _write(process: subprocess.Popen[str], line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()

    def _read(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process exited")
        return line.strip()


if __name__ == "__main__":
    main()
