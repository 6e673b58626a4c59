"""The exceptions asemantic raises.

Every error the library raises on purpose derives from :class:`AsemanticError`, so an
application can catch the whole family in one place. The one documented exception to
that rule is the batch-key check, which raises a plain ``ValueError`` (with the message
``"Batch operations require a dedicated API key"``) as the original design promised;
:class:`MissingBatchKeyError` is both, so either ``except`` clause catches it::

    AsemanticError
    ├── InvalidInputError (also ValueError)     bad documents, queries, modes, vectors
    │   ├── EmptyDocumentError
    │   ├── UndecodableTextError
    │   ├── ChunkTooLargeError
    │   ├── InvalidModeError
    │   ├── InputFileError                      missing, unreadable or unsupported file
    │   ├── InvalidVectorError
    │   └── SpaceError                          an embedding-space command refused
    │       ├── UnknownSpaceError               no such space in this knowledge base
    │       └── SpaceIncompleteError            switch to a space missing vectors
    ├── MissingBatchKeyError (also ValueError)  batch use without a batch key
    ├── StoreError                              the database side (SQLite, PostgreSQL)
    │   ├── ExtensionLoadingUnavailableError    no way to load sqlite-vec
    │   ├── StoreConnectionError                server refused, unreachable or gone
    │   ├── StoreAuthenticationError            the server refused the role or password
    │   ├── VectorExtensionMissingError         pgvector not installed, and not creatable
    │   ├── SchemaVersionError                  database from a newer asemantic
    │   ├── EmbeddingSpaceMismatchError         model/dimensions/task differ from the file's
    │   │   └── SpaceSwitchedError              switched elsewhere; this core's embedder is old
    │   ├── StoreClosedError
    │   ├── SpacesUnsupportedError              the engine holds one space only
    │   └── TransferError                       copying a knowledge base refused or failed
    │       ├── KnowledgeBaseMismatchError      the destination holds another knowledge base
    │       └── TransferVerificationError       counts or checksums differ after a copy
    ├── ProviderError                           the embedding provider (Gemini)
    │   ├── AuthenticationError                 bad, revoked or missing key
    │   ├── RateLimitError                      429 after retries
    │   ├── ProviderUnavailableError            5xx / timeouts after retries
    │   └── ProviderRequestError                a 4xx the caller must fix
    └── BatchError                              the batch pipeline
        ├── InvalidTransitionError              a job trigger its status does not allow
        └── SupervisorLeaseError                another supervisor holds the database

No message in this module, nor any raised by the library, contains an API key: adapters
build messages from status codes and provider text that has been scrubbed of secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asemantic.domain.space import EmbeddingSpace

__all__ = [
    "AsemanticError",
    "AuthenticationError",
    "BatchError",
    "ChunkTooLargeError",
    "EmbeddingSpaceMismatchError",
    "EmptyDocumentError",
    "ExtensionLoadingUnavailableError",
    "InputFileError",
    "InvalidInputError",
    "InvalidModeError",
    "InvalidTransitionError",
    "InvalidVectorError",
    "KnowledgeBaseMismatchError",
    "MissingBatchKeyError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderUnavailableError",
    "RateLimitError",
    "SchemaVersionError",
    "SpaceError",
    "SpaceIncompleteError",
    "SpaceSwitchedError",
    "SpacesUnsupportedError",
    "StoreAuthenticationError",
    "StoreBusyError",
    "StoreClosedError",
    "StoreConnectionError",
    "StoreError",
    "SupervisorLeaseError",
    "TransferError",
    "TransferVerificationError",
    "UndecodableTextError",
    "UnknownSpaceError",
    "VectorExtensionMissingError",
]

BATCH_KEY_REQUIRED = "Batch operations require a dedicated API key"


class AsemanticError(Exception):
    """Root of every error asemantic raises on purpose."""


class InvalidInputError(AsemanticError, ValueError):
    """The caller passed something the library cannot accept; nothing was written."""


class EmptyDocumentError(InvalidInputError):
    """The document (or query) is empty or holds only white space."""


class UndecodableTextError(InvalidInputError):
    """Bytes that are not UTF-8, NUL bytes or lone surrogates in the text."""


class ChunkTooLargeError(InvalidInputError):
    """A piece of text cannot be split to fit the model's input limit."""


class InvalidModeError(InvalidInputError):
    """An ingestion mode other than ``sync``, ``async`` or ``auto``."""


class InputFileError(InvalidInputError):
    """A file to ingest is missing, unreadable, or of a type asemantic does not read."""


class InvalidVectorError(InvalidInputError):
    """A vector of the wrong dimension, or holding NaN or infinity."""


class SpaceError(InvalidInputError):
    """An embedding-space command (plan, migrate, switch, rollback, drop) was refused:
    the knowledge base is unchanged."""


class UnknownSpaceError(SpaceError):
    """No space with that id (or that model and dimensions) is registered."""


class SpaceIncompleteError(SpaceError):
    """A switch to a space that lacks vectors for some chunks, without ``force``."""


class MissingBatchKeyError(AsemanticError, ValueError):
    """A batch operation was asked for, but the keyring has no batch key."""

    def __init__(self) -> None:
        super().__init__(BATCH_KEY_REQUIRED)

    def __reduce__(self) -> tuple[type[MissingBatchKeyError], tuple[()]]:
        return (type(self), ())


class StoreError(AsemanticError):
    """The store (a SQLite file or a PostgreSQL database) failed or refused."""


class ExtensionLoadingUnavailableError(StoreError):
    """Neither the stdlib ``sqlite3`` nor a drop-in driver can load sqlite-vec."""


class SchemaVersionError(StoreError):
    """The database was written by a newer version of asemantic."""


class EmbeddingSpaceMismatchError(StoreError):
    """The database holds vectors of another model, dimension or task type."""


class SpaceSwitchedError(EmbeddingSpaceMismatchError):
    """The knowledge base was switched to another embedding space (by another core or
    process) and this core's embedder, given to it when it was opened, is of the old
    one: nothing was embedded or written. Reopen with an embedder of ``space`` (the
    active space now, id ``space_id``), or switch this core with
    ``space_switch(..., embedder=)``. Keyword search and ``mode="async"`` ingestion,
    which embed nothing, go on working."""

    def __init__(self, message: str, *, space_id: int, space: EmbeddingSpace) -> None:
        super().__init__(message)
        self.space_id = space_id
        self.space = space


class StoreBusyError(StoreError):
    """Another connection or process held the database's write lock for longer than
    ``busy_timeout``; nothing was written, and trying again later may succeed."""


class StoreConnectionError(StoreError):
    """The database server could not be reached (connection refused, host unreachable,
    no such socket, a timeout) or the connection was lost; the message has a hint and
    never the password."""


class StoreAuthenticationError(StoreError):
    """The database server refused the role or its password (or the database does not
    let that role connect)."""


class VectorExtensionMissingError(StoreError):
    """The PostgreSQL database has no ``vector`` extension (pgvector), and the role
    cannot create it."""


class SpacesUnsupportedError(StoreError):
    """This engine keeps one embedding space per database (no migration yet)."""


class StoreClosedError(StoreError):
    """The store (or the core that owns it) has been closed."""


class TransferError(StoreError):
    """Copying a knowledge base was refused (nothing written) or did not complete."""


class KnowledgeBaseMismatchError(TransferError):
    """The destination already holds another knowledge base (another ``database_id``)."""


class TransferVerificationError(TransferError):
    """After a copy, the destination's counts or checksums differ from the source's.

    ``report`` is the :class:`~asemantic.transfer.CopyReport` with both sides' figures.
    """

    def __init__(self, message: str, *, report: object = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_verification_error, (str(self), self.report))


def _rebuild_verification_error(message: str, report: object) -> TransferVerificationError:
    return TransferVerificationError(message, report=report)


class ProviderError(AsemanticError):
    """The embedding provider failed; ``status`` is the HTTP status when there was one.

    ``retry_after`` is the wait the provider asked for (a ``google.rpc.RetryInfo``
    detail or a ``Retry-After`` header), in seconds; ``token_quota`` says the refusal
    names a token quota (a 429 whose ``QuotaFailure`` or message is about tokens, such as
    the Batch API's enqueued-token quota), which a smaller request may pass.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        token_quota: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.token_quota = token_quota

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_provider_error,
            (type(self), str(self), self.status, self.retry_after, self.token_quota),
        )


def _rebuild_provider_error(
    cls: type[ProviderError],
    message: str,
    status: int | None,
    retry_after: float | None = None,
    token_quota: bool = False,
) -> ProviderError:
    return cls(message, status=status, retry_after=retry_after, token_quota=token_quota)


class AuthenticationError(ProviderError):
    """The provider rejected the API key (invalid, revoked or missing)."""


class RateLimitError(ProviderError):
    """The provider kept answering 429 after the retry budget was spent."""


class ProviderUnavailableError(ProviderError):
    """5xx answers, timeouts or connection failures after the retry budget was spent."""


class ProviderRequestError(ProviderError):
    """The provider refused the request as malformed (a 4xx other than 401/403/429)."""


class BatchError(AsemanticError):
    """The batch pipeline could not do what was asked."""


class InvalidTransitionError(BatchError):
    """A batch job was asked to move along an edge its state machine does not have."""


class SupervisorLeaseError(BatchError):
    """Another supervisor holds this database's lease."""
