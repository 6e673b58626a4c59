"""What every command shares: settings from the global options, keys, opening the core.

Keys come from the command line or the environment (click reads ``GEMINI_API_KEY`` and
``GEMINI_BATCH_API_KEY``; this is the only place in asemantic where the environment
decides anything). They are checked before the database is opened, so a missing or
malformed key changes nothing on disk.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from asemantic import RetryConfig
from asemantic.cli.errors import CliError, ExitCode, KeyHint, from_exception, redact
from asemantic.cli.output import Output
from asemantic.config import CoreConfig, GeminiSettings
from asemantic.core import SemanticCore
from asemantic.domain.space import DEFAULT_MODEL, EmbeddingSpace
from asemantic.errors import AsemanticError, AuthenticationError, InvalidInputError
from asemantic.keys import GoogleKeyring
from asemantic.ports import EmbedRequest

__all__ = ["AppContext", "Need", "OfflineEmbedder", "json_option", "pass_app"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

ONLINE_ENV = "GEMINI_API_KEY"
BATCH_ENV = "GEMINI_BATCH_API_KEY"

CLI_RETRY = RetryConfig(attempts=4, initial_delay=0.25, max_delay=10.0, timeout=60.0)
"""Retries for a command a person waits on: give up on a dead endpoint in ~2 seconds."""


class Need(enum.Enum):
    """Which keys a command needs."""

    NONE = "none"
    ONLINE = "online"
    BATCH = "batch"


class OfflineEmbedder:
    """The embedder of commands that only read the database: it never calls out."""

    def __init__(self, space: EmbeddingSpace) -> None:
        self._space = space

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        raise AuthenticationError(f"this command has no online key; set {ONLINE_ENV}")

    async def embed_query(self, text: str) -> bytes:
        raise AuthenticationError(f"this command has no online key; set {ONLINE_ENV}")

    async def aclose(self) -> None:
        return None


@dataclass(slots=True, kw_only=True)
class AppContext:
    """The global options, as every command sees them (``ctx.obj``)."""

    db: Path | str
    """A SQLite file, or a database URL (``postgresql://...``) kept as text."""
    db_explicit: bool
    api_key: str | None
    batch_key: str | None
    base_url: str | None
    dimensions: int
    model: str = DEFAULT_MODEL
    json_mode: bool
    verbose: int
    key_hint: KeyHint = KeyHint.ANY
    output: Output = field(init=False)

    def __post_init__(self) -> None:
        self.api_key = self.api_key or None
        self.batch_key = self.batch_key or None
        self.output = Output(json_mode=self.json_mode)

    def __repr__(self) -> str:
        return f"AppContext(db={self.shown_db!r}, json={self.json_mode})"

    @property
    def shown_db(self) -> str:
        """The database as it may be printed: a URL's password replaced by ``***``."""
        return shown_target(str(self.db))

    def set_json(self, enabled: bool) -> None:
        if enabled and not self.json_mode:
            self.json_mode = True
            self.output = Output(json_mode=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key for key in (self.api_key, self.batch_key) if key)

    # --- keys -------------------------------------------------------------------------

    def keyring(self, need: Need) -> GoogleKeyring | None:
        """The keys for ``need``; a missing or malformed one is a :class:`CliError` (3)."""
        if need is Need.NONE:
            return None
        if self.api_key is None:
            raise CliError(
                "no API key for Gemini",
                code=ExitCode.AUTH,
                hint=f"set {ONLINE_ENV} (or pass --api-key)",
            )
        if need is Need.BATCH and self.batch_key is None:
            raise CliError(
                "no batch API key: batch work uses a dedicated key",
                code=ExitCode.AUTH,
                hint=f"set {BATCH_ENV} (or pass --batch-api-key)",
            )
        try:
            return GoogleKeyring(self.api_key, batch_key=self.batch_key)
        except InvalidInputError as exc:
            raise CliError(
                f"malformed API key: {redact(str(exc), self.secrets)}",
                code=ExitCode.AUTH,
                hint=f"check {ONLINE_ENV} and {BATCH_ENV} for stray spaces or quotes",
            ) from None

    def settings(self, base_url: str | None = None) -> GeminiSettings:
        return GeminiSettings(base_url=base_url or self.base_url, retry=CLI_RETRY)

    def config(self) -> CoreConfig:
        return CoreConfig(space=EmbeddingSpace(model=self.model, dimensions=self.dimensions))

    # --- the database -----------------------------------------------------------------

    def require_database(self) -> None:
        """Refuse to go on (exit 5) when the database file does not exist (a server
        database is checked by its engine when opened)."""
        if not isinstance(self.db, Path):
            return
        if not self.db.exists():
            raise CliError(
                f"no database at {self.db}",
                code=ExitCode.DATABASE,
                hint="ingest documents first (asemantic ingest PATH), or pass --db",
            )
        if self.db.is_dir():
            raise CliError(
                f"{self.db} is a directory, not a database",
                code=ExitCode.DATABASE,
                hint="pass --db with a file path",
            )

    @asynccontextmanager
    async def core(
        self, *, need: Need, must_exist: bool = True, keys: GoogleKeyring | None = None
    ) -> AsyncIterator[SemanticCore]:
        """Open the core for a command (keys checked before the file is touched)."""
        if keys is None:
            keys = self.keyring(need)
        if must_exist:
            self.require_database()
        embedder = None if keys is not None else OfflineEmbedder(self.config().space)
        created = isinstance(self.db, Path) and not self.db.exists()
        discard = False
        try:
            async with SemanticCore.open(
                self.db,
                keys=keys,
                embedder=embedder,
                config=self.config(),
                gemini=self.settings(),
            ) as core:
                try:
                    yield core
                except Exception:
                    discard = created and await _holds_nothing(core)
                    raise
        finally:
            if discard and isinstance(self.db, Path):
                _remove_database(self.db)

    # --- running ----------------------------------------------------------------------

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Run a command's coroutine; expected errors become :class:`CliError`."""
        try:
            return asyncio.run(work)
        except BaseException as exc:  # noqa: BLE001 - the command boundary
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc``: a :class:`CliError` unless it must pass through."""
        leaf = _first_leaf(exc)
        if isinstance(leaf, (CliError, click.ClickException)):
            return leaf
        if isinstance(leaf, (KeyboardInterrupt, asyncio.CancelledError)):
            return CliError("interrupted", code=ExitCode.INTERRUPTED)
        if isinstance(leaf, AsemanticError):
            return from_exception(leaf, key_hint=self.key_hint, secrets=self.secrets)
        if isinstance(leaf, OSError):
            return CliError(
                redact(str(leaf), self.secrets),
                code=ExitCode.FAILURE,
                hint="check the path, its permissions and the free disk space",
            )
        if not isinstance(leaf, Exception):
            return exc  # SystemExit and friends
        if self.verbose:
            text = "".join(traceback.format_exception(exc))
            click.echo(redact(text, self.secrets), err=True)
        return from_exception(leaf, secrets=self.secrets)


async def _holds_nothing(core: SemanticCore) -> bool:
    """True when the database has no document and no job (a failed first command)."""
    try:
        stats = await core.store.stats()
    except AsemanticError:
        return False
    return stats.empty


def database_target(text: str) -> Path | str:
    """``--db`` as given: a URL (``scheme://...``) stays text, anything else is a path."""
    return text if _URL.match(text) else Path(text)


def shown_target(target: str) -> str:
    """``target`` as it may be printed: a URL's password (in its user part or as a
    ``password=`` parameter) replaced by ``***``."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _PASSWORD.sub(r"\g<head>:***@", target))


def _remove_database(path: Path) -> None:
    """Remove a database this command created and left empty: bad input writes nothing."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    logger.debug("removed the empty database a failed command created")


def _first_leaf(exc: BaseException) -> BaseException:
    """The first real exception in a (nested) exception group, or ``exc`` itself.

    Task groups wrap what their tasks raise; the library's online embedder lets such a
    group escape, so an ``AuthenticationError`` can arrive inside one.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)

pass_app = click.make_pass_decorator(AppContext)


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on a subcommand too (``asemantic stats --json``)."""

    def enable(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        app = ctx.find_object(AppContext)
        if value and app is not None:
            app.set_json(True)
        return value

    return click.option(
        "--json",
        "json_flag",
        is_flag=True,
        expose_value=False,
        callback=enable,
        help="Machine-readable output (JSON).",
    )(function)
