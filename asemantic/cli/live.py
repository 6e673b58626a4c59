"""A view of the batch pipeline while a supervisor runs (``supervise`` and ``demo``).

It shows jobs per state, chunks per status and the supervisor's health, and reports
each job transition as the hooks deliver it. Four styles:

* ``LIVE``: a rich live panel on a terminal, transitions printed above it;
* ``PLAIN``: one line per transition, and a status line whenever the counts change;
* ``JSONL``: the same as JSON objects, one per line (``{"event": "transition", ...}``);
* ``SILENT``: nothing printed; events are collected for a final JSON document.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asemantic.batch.supervisor import BatchSupervisor, SupervisorHealth
from asemantic.cli.output import Output, count_line, short_id
from asemantic.core import SemanticCore
from asemantic.domain.documents import EmbeddingStatus
from asemantic.domain.events import TransitionEvent
from asemantic.domain.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus

__all__ = [
    "CHUNK_ORDER",
    "JOB_ORDER",
    "PipelineView",
    "Snapshot",
    "ViewStyle",
    "event_record",
    "is_idle",
]

CHUNK_ORDER = tuple(status.value for status in EmbeddingStatus)
JOB_ORDER = tuple(status.value for status in JobStatus)
_STAT_ORDER = ("sent", "succeeded", "failed", "retried", "stale", "missing", "malformed")


class ViewStyle(enum.Enum):
    LIVE = "live"
    PLAIN = "plain"
    JSONL = "jsonl"
    SILENT = "silent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Counts at one moment, and the supervisor's health."""

    chunks: Mapping[str, int]
    jobs: Mapping[str, int]
    ticks: int
    paused: str | None
    uncleaned: int = 0
    """Finished jobs whose remote files and job are not deleted yet."""
    waiting: str | None = None
    """Why creates wait (the provider refused one), and until when; None: they do not."""

    def key(self) -> tuple[object, ...]:
        return (tuple(self.chunks.items()), tuple(self.jobs.items()), self.paused, self.waiting)


def is_idle(snapshot: Snapshot) -> bool:
    """No chunk PENDING, no job CREATED, SUBMITTED or PROCESSING, nothing left remotely."""
    if snapshot.chunks.get(EmbeddingStatus.PENDING.value, 0) or snapshot.uncleaned:
        return False
    return not any(snapshot.jobs.get(status.value, 0) for status in ACTIVE_STATUSES)


def event_record(event: TransitionEvent) -> dict[str, Any]:
    """A transition as a JSON-ready dict."""
    return {
        "job_id": event.job_id,
        "remote_name": event.remote_name,
        "from": event.from_status.value,
        "to": event.to_status.value,
        "at": event.at.isoformat(),
        "stats": dict(event.stats),
        "space_id": event.space_id,
    }


def describe_event(event: TransitionEvent, *, arrow: str = "->") -> str:
    """``job 1a2b3c4d SUBMITTED -> PROCESSING  sent=16``."""
    stats = " ".join(f"{k}={event.stats[k]}" for k in _STAT_ORDER if k in event.stats)
    moment = event.at.astimezone().strftime("%H:%M:%S")
    space = f" (space {event.space_id})" if event.space_id != 1 else ""
    text = (
        f"{moment} job {short_id(event.job_id)}{space} "
        f"{event.from_status.value} {arrow} {event.to_status.value}"
    )
    return f"{text}  {stats}" if stats else text


class PipelineView:
    """Shows what a running :class:`BatchSupervisor` does."""

    def __init__(
        self, output: Output, *, style: ViewStyle, poll_interval: float, footer: str = ""
    ) -> None:
        self._output = output
        self._style = style
        self._poll_interval = poll_interval
        self._footer = footer
        self._snapshot: Snapshot | None = None
        self._printed: tuple[object, ...] | None = None
        self._live: Live | None = None
        self._idle = anyio.Event()
        self._halted = anyio.Event()
        self.events: list[dict[str, Any]] = []

    @classmethod
    def for_output(
        cls,
        output: Output,
        *,
        poll_interval: float,
        collect_json: bool = False,
        footer: str = "",
    ) -> PipelineView:
        """The style that suits ``output``: JSON lines, or collected for one document."""
        if output.json_mode:
            style = ViewStyle.SILENT if collect_json else ViewStyle.JSONL
        elif output.interactive:
            style = ViewStyle.LIVE
        else:
            style = ViewStyle.PLAIN
        return cls(output, style=style, poll_interval=poll_interval, footer=footer)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    # --- events -----------------------------------------------------------------------

    def on_transition(self, event: TransitionEvent) -> None:
        """The transition hook: record the event and show it."""
        record = event_record(event)
        self.events.append(record)
        if self._style is ViewStyle.JSONL:
            self._output.json_line({"event": "transition", **record})
        elif self._style is ViewStyle.LIVE:
            style = "green" if event.to_status is JobStatus.COMPLETED else ""
            if event.to_status is JobStatus.FAILED:
                style = "red"
            console = self._live.console if self._live is not None else self._output.console
            console.print(Text(describe_event(event, arrow="→"), style=style))
        elif self._style is ViewStyle.PLAIN:
            self._output.line(describe_event(event))

    # --- counts -----------------------------------------------------------------------

    async def refresh(self, core: SemanticCore, supervisor: BatchSupervisor | None) -> Snapshot:
        """Read the counts now; print a status line if they changed (plain and JSON)."""
        stats = await core.stats()
        finished = await core.batch_jobs.jobs(TERMINAL_STATUSES, uncleaned=True)
        health = supervisor.health if supervisor is not None else None
        snapshot = Snapshot(
            chunks={k: int(stats.chunks.get(k, 0)) for k in CHUNK_ORDER},
            jobs={k: int(stats.jobs.get(k, 0)) for k in JOB_ORDER},
            ticks=health.ticks if health else 0,
            paused=health.paused_reason if health else None,
            uncleaned=len(finished),
            waiting=_waiting(health),
        )
        self._snapshot = snapshot
        if is_idle(snapshot) and (supervisor is None or await supervisor.idle()):
            self._idle.set()
        if health is not None and not health.running:
            self._halted.set()
        if snapshot.key() != self._printed:
            self._printed = snapshot.key()
            self._show_status(snapshot)
        return snapshot

    def _show_status(self, snapshot: Snapshot) -> None:
        if self._style is ViewStyle.PLAIN:
            chunks = count_line(snapshot.chunks, CHUNK_ORDER)
            jobs = count_line(snapshot.jobs, JOB_ORDER, nonzero=True)
            self._output.line(f"status: chunks {chunks} | jobs {jobs}")
            if snapshot.paused:
                self._output.line(f"paused: {snapshot.paused}")
            if snapshot.waiting:
                self._output.line(f"waiting: {snapshot.waiting}")
        elif self._style is ViewStyle.JSONL:
            self._output.json_line(
                {
                    "event": "status",
                    "chunks": dict(snapshot.chunks),
                    "jobs": dict(snapshot.jobs),
                    "paused": snapshot.paused,
                    "waiting": snapshot.waiting,
                }
            )

    def __rich__(self) -> RenderableType:
        snapshot = self._snapshot
        if snapshot is None:
            return Text("starting the supervisor ...", style="dim")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("jobs", count_line(snapshot.jobs, JOB_ORDER))
        grid.add_row("chunks", count_line(snapshot.chunks, CHUNK_ORDER))
        health = f"tick {snapshot.ticks} · a pass every {self._poll_interval:g} s"
        parts: list[RenderableType] = [
            grid,
            Text(f"{health} · {self._footer}" if self._footer else health, style="dim"),
        ]
        if snapshot.paused:
            parts.append(Text(f"paused: {snapshot.paused}", style="red"))
        if snapshot.waiting:
            parts.append(Text(f"waiting: {snapshot.waiting}", style="yellow"))
        return Group(*parts)

    async def wait_idle(self) -> None:
        """Wait until a refresh finds nothing PENDING and no active job.

        Unlike :meth:`BatchSupervisor.wait_until_idle` this does not wake the supervisor:
        polling keeps the supervisor's own pace (``running`` refreshes the counts).
        """
        await self._idle.wait()

    async def wait_halted(self) -> None:
        """Wait until a refresh finds that the supervisor stopped by itself (lost lease)."""
        await self._halted.wait()

    # --- running ----------------------------------------------------------------------

    @asynccontextmanager
    async def running(
        self, core: SemanticCore, supervisor: BatchSupervisor, *, every: float = 0.5
    ) -> AsyncIterator[PipelineView]:
        """Keep the counts fresh (and the live panel drawn) while the block runs."""
        await self.refresh(core, supervisor)
        live = (
            Live(self, console=self._output.console, refresh_per_second=4)
            if self._style is ViewStyle.LIVE
            else None
        )
        with live if live is not None else nullcontext():
            self._live = live
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(self._refresh_forever, core, supervisor, every)
                    try:
                        yield self
                    finally:
                        group.cancel_scope.cancel()
                await self.refresh(core, supervisor)
            finally:
                self._live = None

    async def _refresh_forever(
        self, core: SemanticCore, supervisor: BatchSupervisor, every: float
    ) -> None:
        while True:
            await anyio.sleep(every)
            await self.refresh(core, supervisor)


def _waiting(health: SupervisorHealth | None) -> str | None:
    """The create wait of ``health`` as a line (to the second, so it changes rarely)."""
    if health is None or health.create_wait_until is None:
        return None
    until = datetime.fromtimestamp(health.create_wait_until).astimezone()
    return (
        f"{health.waiting_jobs} job(s) wait to be created: the provider refused a create "
        f"(quota); next try at {until.strftime('%H:%M:%S')}"
    )
