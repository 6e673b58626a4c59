"""The offline demo: the whole deferred-embedding story in a few seconds, with no key.

1. start the Gemini emulator on a loopback port, on a clock running 60 times faster
   than real time (a batch job that "takes" three minutes finishes in three seconds),
   accepting any key (the demo uses throwaway keys, never yours);
2. open a fresh database in a temporary folder (or ``--db``);
3. ingest the bundled sample corpus in **async** mode: chunks are stored PENDING;
4. run a :class:`~asemantic.BatchSupervisor` with a live view until every chunk is
   READY (bounded by ``--timeout``);
5. search, and show what the batch route saved at list prices.

The real google-genai SDK talks HTTP to the emulator (``GeminiSettings(base_url=...)``).
With ``live=True`` the same runs against Google with the user's keys.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio

from asemantic.batch.supervisor import BatchSupervisor, SupervisorConfig
from asemantic.cli.context import AppContext, Need, shown_target
from asemantic.cli.live import PipelineView
from asemantic.core import CoreStats, SemanticCore
from asemantic.domain.documents import Document, SearchHit
from asemantic.ingestion import MARKDOWN_SUFFIXES, TEXT_SUFFIXES
from asemantic.keys import GoogleKeyring

__all__ = ["DEMO_QUERIES", "DemoOptions", "DemoResult", "run_demo", "sample_documents"]

DEMO_QUERIES = (
    "how do refunds work?",
    "what happened during the payment outage?",
    "why did we reject postgres?",
)
DEMO_ONLINE_KEY = "demo-online-key"  # a throwaway key: the emulator accepts any
DEMO_BATCH_KEY = "demo-batch-key"
LIVE_DB = Path("asemantic-demo.db")

EMULATOR_SPEED = 60.0
"""One real second is one emulated minute."""
PENDING_SECONDS = 60.0
RUNNING_SECONDS = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    live: bool = False
    db: Path | str | None = None
    timeout: float = 45.0
    queries: tuple[str, ...] = DEMO_QUERIES
    k: int = 3

    @property
    def poll_interval(self) -> float:
        return 15.0 if self.live else 0.5


@dataclass(slots=True, kw_only=True)
class DemoResult:
    """What a demo run did, for the final report (or ``--json``)."""

    database: str
    base_url: str | None
    live: bool
    ingested: list[dict[str, Any]] = field(default_factory=list)
    idle: bool = False
    transitions: list[dict[str, Any]] = field(default_factory=list)
    searches: list[tuple[str, list[SearchHit]]] = field(default_factory=list)
    stats: CoreStats | None = None
    seconds: float = 0.0


def sample_documents() -> list[tuple[Document, str]]:
    """The bundled sample corpus as (document, kind); sources are ``samples/<name>``."""
    folder = resources.files("asemantic").joinpath("samples")
    found: list[tuple[Document, str]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        suffix = Path(entry.name).suffix.lower()
        if suffix not in MARKDOWN_SUFFIXES | TEXT_SUFFIXES or not entry.is_file():
            continue
        kind = "markdown" if suffix in MARKDOWN_SUFFIXES else "plain"
        text = entry.read_bytes().decode("utf-8")
        found.append((Document(text=text, source=f"samples/{entry.name}"), kind))
    return found


async def run_demo(
    app: AppContext, options: DemoOptions, *, narrate: Narrator | None = None
) -> DemoResult:
    """Run the demo; ``narrate`` is told about each step (the CLI prints it)."""
    tell = narrate or Narrator()
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        if options.live:
            keys = app.keyring(Need.BATCH)
            assert keys is not None
            base_url = app.base_url
            db = options.db or LIVE_DB
        else:
            keys = GoogleKeyring(DEMO_ONLINE_KEY, batch_key=DEMO_BATCH_KEY)
            base_url = await _serve_emulator(stack)
            db = options.db or _temp_db(stack)
        result = DemoResult(database=shown_target(str(db)), base_url=base_url, live=options.live)
        tell.intro(result)
        core = await stack.enter_async_context(
            SemanticCore.open(db, keys=keys, config=app.config(), gemini=app.settings(base_url))
        )
        result.ingested = await _ingest_samples(core, tell)
        result.idle, result.transitions = await _embed(app, core, options, tell)
        for query in options.queries:
            hits = await core.search(query, k=options.k)
            result.searches.append((query, hits))
            tell.searched(query, hits)
        result.stats = await core.stats()
    result.seconds = time.monotonic() - started
    return result


async def _serve_emulator(stack: AsyncExitStack) -> str:
    """Serve a Gemini emulator on loopback until ``stack`` closes; its base URL."""
    # The emulator is test tooling (asemantic.testing): loaded only when the offline
    # demo runs, so ``import asemantic.cli`` and ``asemantic --help`` never pay for it.
    from asemantic.testing.emulator import GeminiEmulator, RealClock

    emulator = GeminiEmulator(
        clock=RealClock(speed=EMULATOR_SPEED),
        pending_seconds=PENDING_SECONDS,
        running_seconds=RUNNING_SECONDS,
    )
    return await stack.enter_async_context(emulator.serve())


def _temp_db(stack: AsyncExitStack) -> Path:
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="asemantic-demo-"))
    return Path(folder) / "demo.db"


async def _ingest_samples(core: SemanticCore, tell: Narrator) -> list[dict[str, Any]]:
    documents = sample_documents()
    tell.step(f"ingest the {len(documents)} sample documents in async mode")
    rows: list[dict[str, Any]] = []
    for document, kind in documents:
        result = await core.ingest(document, mode="async", kind=kind)
        row = {
            "source": document.source,
            "document_id": result.document_id,
            "chunks_pending": result.chunks_pending,
            "chunks_unchanged": result.chunks_unchanged,
        }
        rows.append(row)
        tell.ingested(row)
    return rows


async def _embed(
    app: AppContext, core: SemanticCore, options: DemoOptions, tell: Narrator
) -> tuple[bool, list[dict[str, Any]]]:
    """Run a supervisor with a live view until idle (or the timeout)."""
    tell.step("run the batch supervisor until every chunk is embedded")
    config = SupervisorConfig(
        poll_interval=options.poll_interval, min_batch_size=1, max_wait=0.0, jitter=0.1
    )
    view = PipelineView.for_output(
        app.output,
        poll_interval=config.poll_interval,
        collect_json=True,
        footer=f"waiting at most {options.timeout:g} s",
    )
    core.batch_manager.on_transition(view.on_transition)
    async with (
        BatchSupervisor(core, config) as supervisor,
        view.running(core, supervisor, every=0.25),
    ):
        with anyio.move_on_after(options.timeout) as scope:
            await view.wait_idle()
    return not scope.cancelled_caught, view.events


class Narrator:
    """Hears about each step of the demo; this one stays silent."""

    def intro(self, result: DemoResult) -> None:
        return None

    def step(self, text: str) -> None:
        return None

    def ingested(self, row: dict[str, Any]) -> None:
        return None

    def searched(self, query: str, hits: Sequence[SearchHit]) -> None:
        return None
