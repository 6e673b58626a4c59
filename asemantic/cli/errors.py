"""Exit codes, and how an error becomes one line on standard error.

A user (or a script) acts on the exit code: 2 means fix the command line or the input,
3 the key, 4 the network or the provider's health, 5 the database. Every expected error
(any :class:`~asemantic.errors.AsemanticError`, a click usage error, an unreadable input
file) is shown as ``error: ...`` plus a ``hint: ...``; never as a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from asemantic.domain.policy import scrub
from asemantic.errors import (
    AsemanticError,
    AuthenticationError,
    EmbeddingSpaceMismatchError,
    ExtensionLoadingUnavailableError,
    InvalidInputError,
    MissingBatchKeyError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    SchemaVersionError,
    StoreError,
    SupervisorLeaseError,
)

__all__ = [
    "CliError",
    "EXIT_CODES_HELP",
    "ExitCode",
    "KeyHint",
    "from_exception",
    "redact",
]


class ExitCode(enum.IntEnum):
    """What the ``asemantic`` process returns."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    AUTH = 3
    UNREACHABLE = 4
    DATABASE = 5
    INTERRUPTED = 130


EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    failure (a command or a batch job failed)
  2    usage error or bad input (nothing was written)
  3    API key problem (missing, malformed or rejected)
  4    provider unreachable or unavailable (network, 5xx, timeouts, rate limits)
  5    database problem (missing, locked, corrupt, newer schema, other dimensions)
  130  interrupted"""


class KeyHint(enum.Enum):
    """Which key a command was using, so a rejected key can be named."""

    ANY = "check GEMINI_API_KEY and GEMINI_BATCH_API_KEY (or --api-key / --batch-api-key)"
    ONLINE = "check the online key: GEMINI_API_KEY (or --api-key)"
    BATCH = "check the batch key: GEMINI_BATCH_API_KEY (or --batch-api-key)"


class CliError(Exception):
    """An error with its exit code and a hint, shown without a traceback."""

    def __init__(
        self, message: str, *, code: ExitCode = ExitCode.FAILURE, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: type[BaseException]
    code: ExitCode
    hint: str | None


_BATCH_KEY_HINT = (
    "set GEMINI_BATCH_API_KEY (or pass --batch-api-key): batch work uses a dedicated key"
)

# First match wins: subclasses before their parents.
_RULES: tuple[_Rule, ...] = (
    _Rule(MissingBatchKeyError, ExitCode.AUTH, _BATCH_KEY_HINT),
    _Rule(AuthenticationError, ExitCode.AUTH, None),
    _Rule(RateLimitError, ExitCode.UNREACHABLE, "the provider is rate limiting; retry later"),
    _Rule(
        ProviderUnavailableError,
        ExitCode.UNREACHABLE,
        "check the network or --base-url (for a local emulator: asemantic emulator)",
    ),
    _Rule(ProviderError, ExitCode.FAILURE, "the provider refused the request"),
    _Rule(
        EmbeddingSpaceMismatchError,
        ExitCode.DATABASE,
        "pass the --model and --dimensions the database was built with, or use another --db",
    ),
    _Rule(SchemaVersionError, ExitCode.DATABASE, "upgrade asemantic to open this database"),
    _Rule(
        ExtensionLoadingUnavailableError,
        ExitCode.DATABASE,
        "this Python cannot load SQLite extensions; see the message for the fix",
    ),
    _Rule(StoreError, ExitCode.DATABASE, "check the --db path and that it is a database"),
    _Rule(InvalidInputError, ExitCode.USAGE, "nothing was written; fix the input and retry"),
    _Rule(
        SupervisorLeaseError,
        ExitCode.FAILURE,
        "only one supervisor may run per database; stop the other one first",
    ),
    _Rule(AsemanticError, ExitCode.FAILURE, "run with -v for details"),
)


def from_exception(
    exc: BaseException, *, key_hint: KeyHint = KeyHint.ANY, secrets: Iterable[str] = ()
) -> CliError:
    """The :class:`CliError` for an expected exception (redacted of ``secrets``)."""
    secrets = tuple(secrets)
    for rule in _RULES:
        if isinstance(exc, rule.kind):
            hint = rule.hint
            if rule.code is ExitCode.AUTH and hint is None:
                hint = key_hint.value
            return CliError(redact(str(exc), secrets), code=rule.code, hint=hint)
    return CliError(
        redact(f"unexpected {type(exc).__name__}: {exc}", secrets),
        code=ExitCode.FAILURE,
        hint="this looks like a bug; run with -v to see the traceback",
    )


MIN_REDACTED_LENGTH = 6
"""Shorter "keys" (``a``, test values) are no secret, and replacing them would mangle text."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of at least :data:`MIN_REDACTED_LENGTH` characters
    replaced by ``***`` (defence in depth; :func:`asemantic.domain.policy.scrub`)."""
    return scrub(text, (secret for secret in secrets if len(secret) >= MIN_REDACTED_LENGTH))
