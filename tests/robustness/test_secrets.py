"""Keys never leak: not in logs at any level, reprs, exceptions, the database or temp files.

One run goes through the whole pipeline over loopback HTTP (the real SDK and HTTP
stack, not the in-process transport): sync and async ingestion, flush, sync, search
and a supervisor, with every logger at DEBUG and warnings captured, while the emulator
answers 400/401/403/429/500, times out (latency beyond ``RetryConfig.timeout``), drops
connections, and echoes both keys back in its error messages. Afterwards the two
canary keys (and the fragment ``LEAK-CANARY`` of either) are searched for in:

* every captured log record (message, arguments, extras, formatted traceback),
  warnings, and the process's stdout/stderr;
* ``str``/``repr``/formatted traceback of every exception raised and of the chain a
  traceback shows (``__cause__``, and ``__context__`` unless suppressed), the ``repr``
  of the local variables of every frame of those tracebacks (what error trackers
  capture "with locals"), and the pickle of each exception;
* ``str``/``repr`` of every public object (and the pickle of the values that pickle);
* the bytes of the database, its WAL and SHM, during the run and after closing;
* every file created in the temporary directory (read just before asemantic deletes
  it), and every file left there.

A second test follows the chain a traceback hides: an SDK error kept as the suppressed
``__context__`` of asemantic's exceptions, and what hangs off it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from asemantic import (
    AuthenticationError,
    BatchSupervisor,
    CoreConfig,
    GeminiBatchClient,
    GeminiEmbedder,
    GeminiSettings,
    GoogleKeyring,
    ProviderError,
    RetryConfig,
    SemanticCore,
    TransitionEvent,
)
from asemantic.adapters.gemini import batch as batch_module
from asemantic.testing.emulator import Fault, GeminiEmulator
from tests.robustness.conftest import (
    BATCH_KEY,
    DEFAULT_KEY,
    SPACE,
    check_contracts,
    corpus,
    drain,
    keep_completing,
)
from tests.support import fast_supervisor

FRAGMENT = "LEAK-CANARY"
STATUSES = (400, 401, 403, 429, 500)
# A provider (or a proxy) quoting the key of the request back in its error message.
# Each call only ever sends one key, so each echo names that call's key.
ECHO_DEFAULT = f"API key {DEFAULT_KEY} rejected (x-goog-api-key: {DEFAULT_KEY})"
ECHO_BATCH = f"API key {BATCH_KEY} rejected (x-goog-api-key: {BATCH_KEY})"
LOGGERS = (
    "",
    "asemantic",
    "google",
    "google_genai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "aiosqlite",
    "asyncio",
    "urllib3",
)


def _needles() -> list[bytes]:
    needles = []
    for secret in (DEFAULT_KEY, BATCH_KEY, FRAGMENT):
        needles += [secret.encode("utf-8"), secret.encode("utf-16-le")]
    return needles


def _leaks(where: str, data: str | bytes) -> list[str]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return [f"{where}: {needle!r}" for needle in _needles() if needle in raw]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[tuple[str, str]]:
        for record in self.records:
            yield f"log {record.name}", self.format(record)
            yield f"log {record.name} dict", repr(vars(record))


@contextlib.contextmanager
def everything_at_debug() -> Iterator[Capture]:
    """Every logger at DEBUG into one handler; warnings into logging too."""
    capture = Capture()
    names = set(LOGGERS) | set(logging.Logger.manager.loggerDict)
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.disabled)
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if name == "" or not logger.propagate:
            logger.addHandler(capture)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield capture
    finally:
        logging.captureWarnings(False)
        for name, (level, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled
            logger.removeHandler(capture)


def _shown_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what a traceback shows of its chain (and group members)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)


def _exception_texts(exc: BaseException) -> Iterator[tuple[str, str | bytes]]:
    for item in _shown_chain(exc):
        name = type(item).__name__
        yield f"str({name})", str(item)
        yield f"repr({name})", repr(item)
        yield f"traceback({name})", "".join(traceback.format_exception(item))
        tb = item.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for var, value in frame.f_locals.items():
                with contextlib.suppress(Exception):
                    yield f"local {frame.f_code.co_name}.{var} of {name}", repr(value)[:20_000]
            tb = tb.tb_next
        pickled = _pickled(item)
        if pickled is not None:
            yield f"pickle({name})", pickled


def _object_texts(obj: object) -> Iterator[tuple[str, str | bytes]]:
    name = type(obj).__name__
    yield f"repr({name})", repr(obj)
    yield f"str({name})", str(obj)
    pickled = _pickled(obj)
    if pickled is not None:
        yield f"pickle({name})", pickled


def _pickled(obj: object) -> bytes | None:
    try:
        return pickle.dumps(obj)
    except (TypeError, pickle.PicklingError, AttributeError):
        return None  # refusing to be pickled is fine (a keyring does)


def _files_in(folder: Path) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in folder.rglob("*") if path.is_file()]


def _database_bytes(path: Path) -> Iterator[tuple[str, bytes]]:
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            yield f"database file {file.name}", file.read_bytes()


class Run:
    """What the run produced, to be scanned."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.objects: list[object] = []
        self.blobs: list[tuple[str, str | bytes]] = []

    async def expect_error(self, call: Awaitable[object]) -> object:
        try:
            result = await call
        except Exception as exc:
            self.errors.append(exc)
            return None
        self.objects.append(result)
        auth = getattr(result, "auth_error", None)
        if isinstance(auth, BaseException):
            self.errors.append(auth)
        return result


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR and ``tempfile.tempdir`` point at a fresh folder for the run."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def deleted_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The bytes of every temp file asemantic deletes, read just before it does."""
    seen: dict[str, bytes] = {}
    original = batch_module._unlink_quietly

    def read_then_unlink(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            seen[f"{path} #{len(seen)}"] = Path(path).read_bytes()
        original(path)

    monkeypatch.setattr(batch_module, "_unlink_quietly", read_then_unlink)
    return seen


@contextlib.asynccontextmanager
async def _served(emulator: GeminiEmulator) -> AsyncIterator[str]:
    async with emulator.serve() as base_url:
        yield base_url


async def _online_faults(core: SemanticCore, emulator: GeminiEmulator, run: Run) -> int:
    injected = 0
    for status in STATUSES:
        calls: list[tuple[Callable[[], Awaitable[object]], str | None]] = [
            (
                partial(core.ingest, f"# F{status}\n\nfault {status}", source=f"f-{status}"),
                ECHO_DEFAULT,
            ),
            (partial(core.search, f"fault query {status}"), None),
        ]
        for call, message in calls:
            emulator.faults.add(Fault(endpoint="*", status=status, times=2, message=message))
            await run.expect_error(call())
            emulator.faults.clear()
            injected += 1
    for fault in (
        Fault(endpoint="*", latency=0.5, times=2),  # beyond the 0.25 s timeout
        Fault(endpoint="*", drop_connection=True, times=2),
        Fault(endpoint="*", status=503, lose_response=True, times=2, message=ECHO_DEFAULT),
    ):
        emulator.faults.add(fault)
        await run.expect_error(core.ingest("# Slow\n\nslow text", source="slow"))
        emulator.faults.clear()
        injected += 1
    return injected


async def _batch_faults(core: SemanticCore, emulator: GeminiEmulator, run: Run) -> int:
    manager = core.batch_manager
    injected = 0
    endpoints = ("files.upload_start", "batches.create", "batches.get", "files.download")
    for i, endpoint in enumerate(endpoints):
        for status in STATUSES:
            source, text = corpus(1, start=100 + 10 * i + status % 10, prefix="batch")[0]
            await core.ingest(text + f" {endpoint} {status}", source=source, mode="async")
            message = ECHO_BATCH if status in (400, 500) else None
            emulator.faults.add(Fault(endpoint=endpoint, status=status, times=2, message=message))
            await run.expect_error(manager.reconcile())
            await run.expect_error(manager.flush_queue(min_size=1))
            emulator.complete_all()
            await run.expect_error(manager.sync_status())
            emulator.faults.clear()
            injected += 1
        emulator.faults.add(Fault(endpoint=endpoint, latency=0.5, times=2))
        await core.ingest(f"# Late\n\nlate {endpoint}", source=f"late-{endpoint}", mode="async")
        await run.expect_error(manager.flush_queue(min_size=1))
        emulator.complete_all()
        await run.expect_error(manager.sync_status())
        emulator.faults.clear()
        injected += 1
    return injected


async def _supervised(core: SemanticCore, emulator: GeminiEmulator, run: Run) -> int:
    events: list[TransitionEvent] = []
    for source, text in corpus(4, start=200, prefix="supervised"):
        await core.ingest(text, source=source, mode="async")
    emulator.faults.add(
        Fault(endpoint="batches.get", status=429, times=2, message=ECHO_BATCH),
        Fault(endpoint="batches.get", status=500, times=2),
        Fault(endpoint="batches.get", status=401, times=2, message=ECHO_BATCH),
        Fault(endpoint="files.list", status=403, times=2),
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as helpers:
            helpers.start_soon(keep_completing, emulator)
            supervisor = BatchSupervisor(core, fast_supervisor(pause_initial=0.01, pause_max=0.05))
            supervisor.on_transition(events.append)
            async with supervisor:
                await supervisor.wait_until_idle()
                run.objects += [supervisor, supervisor.health, supervisor.config]
            helpers.cancel_scope.cancel()
    run.objects += [supervisor, supervisor.health, *events]
    return 4


async def test_keys_never_leak_through_the_whole_pipeline(
    tmp_path: Path,
    db_path: Path,
    private_tmp: Path,
    deleted_files: dict[str, bytes],
    capfd: pytest.CaptureFixture[str],
) -> None:
    keys = GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)
    emulator = GeminiEmulator(api_keys=[DEFAULT_KEY, BATCH_KEY])
    run = Run()
    retry = RetryConfig(attempts=2, initial_delay=0.001, max_delay=0.01, timeout=0.25)
    with everything_at_debug() as capture:
        async with _served(emulator) as base_url:
            settings = GeminiSettings(base_url=base_url, retry=retry)
            core = await SemanticCore.open(
                db_path,
                keys=keys,
                # A create that timed out lands 0.25 s later: wait 1 s before resending.
                config=CoreConfig(space=SPACE, create_grace_seconds=1.0),
                gemini=settings,
            )
            try:
                for source, text in corpus(3):
                    run.objects.append(await core.ingest(text, source=source, mode="sync"))
                for source, text in corpus(6, start=3):
                    run.objects.append(await core.ingest(text, source=source, mode="async"))
                run.objects.append(await core.batch_manager.flush_queue(min_size=1))
                emulator.complete_all()
                run.objects.append(await core.batch_manager.sync_status())
                run.objects += await core.search("refund invoice", k=5)
                injected = await _online_faults(core, emulator, run)
                injected += await _batch_faults(core, emulator, run)
                injected += await _supervised(core, emulator, run)
                await drain(core, emulator, rounds=30, pause=0.1)
                run.objects += await core.search("refund invoice", k=5)
                run.objects.append(await core.stats())
                await check_contracts(core, emulator)
                batch_client = GeminiBatchClient(keys, space=SPACE, base_url=base_url)
                embedder = GeminiEmbedder(keys, space=SPACE, base_url=base_url)
                run.objects += [
                    core,
                    core.store,
                    core.embedder,
                    core.batch_manager,
                    core.batch_jobs,
                    core.keys,
                    core.keys.default if core.keys else None,
                    core.config,
                    core.gemini,
                    core.space,
                    retry,
                    settings,
                    batch_client,
                    embedder,
                    emulator,
                    *emulator.requests,
                    emulator.faults,
                ]
                await batch_client.aclose()
                await embedder.aclose()
                run.blobs += list(_database_bytes(db_path))  # while open: WAL and SHM
            finally:
                await core.aclose()
        run.blobs += list(_database_bytes(db_path))

    leaks: list[str] = []
    for where, text in capture.texts():
        leaks += _leaks(where, text)
    for exc in run.errors:
        for where, data in _exception_texts(exc):
            leaks += _leaks(where, data)
    for obj in run.objects:
        for where, data in _object_texts(obj):
            leaks += _leaks(where, data)
    for where, blob in run.blobs:
        leaks += _leaks(where, blob)
    for name, blob in deleted_files.items():
        leaks += _leaks(f"deleted temp file {name}", blob)
    left = _files_in(private_tmp)
    for path, blob in left:
        leaks += _leaks(f"temp file left {path}", blob)
    out, err = capfd.readouterr()
    leaks += _leaks("stdout", out) + _leaks("stderr", err)
    assert leaks == []

    # The run did what it claims: faults were met and typed, files were made.
    assert injected == 41
    assert len(run.errors) >= 20
    assert all(isinstance(e, ProviderError) for e in run.errors), {
        type(e).__name__ for e in run.errors
    }
    assert any(isinstance(e, AuthenticationError) for e in run.errors)
    assert any("timed out" in str(e) for e in run.errors)
    assert any("***" in str(e) for e in run.errors)  # the echoed keys, scrubbed
    assert len(capture.records) > 100
    assert {r.levelno for r in capture.records} >= {logging.DEBUG, logging.WARNING}
    assert len(deleted_files) >= 10
    assert left == []
    assert os.environ["TMPDIR"] == str(private_tmp)


def _reachable(exc: BaseException) -> Iterator[tuple[str, object]]:
    """Every exception in the full chain (suppressed context included), and the HTTP
    request and response objects hanging off them."""
    seen: set[int] = set()
    todo: list[tuple[str, BaseException]] = [("exc", exc)]
    while todo:
        path, current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield path, current
        response: Any = getattr(current, "response", None)
        if response is not None:
            yield f"{path}.response", response
            request = getattr(response, "request", None)
            if request is not None:
                yield f"{path}.response.request.headers", dict(request.headers)
        for attr in ("__cause__", "__context__"):
            nxt = getattr(current, attr)
            if nxt is not None:
                todo.append((f"{path}.{attr}", nxt))


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_no_key_is_reachable_from_an_exception_even_through_hidden_context(
    emulator: GeminiEmulator, tmp_path: Path, status: int
) -> None:
    """The full chain (suppressed context too) of errors from every kind of call."""
    keys = GoogleKeyring(DEFAULT_KEY, batch_key=BATCH_KEY)
    settings = GeminiSettings(
        base_url=emulator.base_url,
        transport=emulator.async_transport(),
        retry=RetryConfig(attempts=1, timeout=5.0),
    )
    caught: list[BaseException] = []
    async with SemanticCore.open(
        tmp_path / "kb.db",
        keys=keys,
        config=CoreConfig(space=SPACE, create_grace_seconds=0.0),
        gemini=settings,
    ) as core:
        manager = core.batch_manager
        online: list[Callable[[], Awaitable[object]]] = [
            partial(core.search, "anything"),
            partial(core.ingest, "# Doc\n\nsome text", source="doc"),
        ]
        for call in online:
            emulator.faults.add(Fault(endpoint="*", status=status, message=ECHO_DEFAULT))
            with pytest.raises(ProviderError) as error:
                await call()
            caught.append(error.value)
        await core.ingest("# Queued\n\nqueued text", source="queued", mode="async")
        for endpoint in ("files.upload_start", "batches.create"):
            emulator.faults.add(Fault(endpoint=endpoint, status=status, message=ECHO_BATCH))
            try:
                await manager.flush_queue(min_size=1)
            except ProviderError as exc:
                caught.append(exc)
            await manager.reconcile()
        emulator.faults.add(Fault(endpoint="batches.get", status=status, message=ECHO_BATCH))
        report = await manager.sync_status()
        if report.auth_error is not None:
            caught.append(report.auth_error)
        assert report.errors
    assert len(caught) >= 3
    found = [
        f"{type(exc).__name__}: {path}"
        for exc in caught
        for path, item in _reachable(exc)
        if any(key in repr(item) or key in str(item) for key in (DEFAULT_KEY, BATCH_KEY))
    ]
    assert found == []
