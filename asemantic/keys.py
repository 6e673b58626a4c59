"""API keys, kept out of sight.

A key is a secret: it lives in a :class:`Secret` whose ``repr``/``str`` show ``***``,
which refuses to be pickled, and whose value only the Gemini adapters read, to put it in
the outgoing ``x-goog-api-key`` header. :class:`GoogleKeyring` pairs the key the
application uses online with a separate key for the Batch API, so that bulk work can
never exhaust the quota (or the rate limits) of the key that serves users.
"""

from __future__ import annotations

from typing import NoReturn

from asemantic.domain.policy import require_batch_key
from asemantic.errors import InvalidInputError

__all__ = ["GoogleKeyring", "Secret"]


class Secret:
    """A string that does not show itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError("an API key must be a non-empty string")
        if any(ch.isspace() for ch in value) or not value.isprintable():
            raise InvalidInputError("an API key must not contain white space or control characters")
        self._value = value

    def reveal(self) -> str:
        """The key itself: for the HTTP header, nowhere else."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets cannot be pickled")


class GoogleKeyring:
    """The API keys asemantic uses.

    ``default_key`` serves online calls (sync ingestion and every search query);
    ``batch_key`` serves the Batch API only. Without a batch key, any batch operation
    raises ``ValueError("Batch operations require a dedicated API key")`` before anything
    is written. The keyring never reads the environment: the CLI does that, the library
    takes what it is given.
    """

    __slots__ = ("_batch", "_default")

    def __init__(self, default_key: str, batch_key: str | None = None) -> None:
        self._default = Secret(default_key)
        self._batch = Secret(batch_key) if batch_key is not None else None

    @property
    def default(self) -> Secret:
        return self._default

    @property
    def has_batch_key(self) -> bool:
        return self._batch is not None

    @property
    def batch(self) -> Secret:
        """The batch key; raises the documented ``ValueError`` when there is none
        (:func:`asemantic.domain.policy.require_batch_key`)."""
        require_batch_key(self)
        assert self._batch is not None  # require_batch_key raised otherwise
        return self._batch

    def __repr__(self) -> str:
        batch = "'***'" if self._batch is not None else "None"
        return f"GoogleKeyring(default_key='***', batch_key={batch})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a keyring cannot be pickled")
