"""The events hooks receive when a batch job changes state.

Decisions:

* An event is a frozen value: hooks run one after another on the same event, so none
  may change what the next one sees. ``stats`` is therefore copied into a read-only,
  hashable :class:`Stats` mapping (a ``MappingProxyType`` would be read-only but not
  hashable, which would make the frozen event unhashable too).
* ``at`` must be timezone-aware; a naive time is refused with ``InvalidInputError``.
* The callback type and the dispatcher live in :mod:`asemantic.batch.hooks`
  (``TransitionCallback``, ``HookRegistry``): a hook may be a plain function or a
  coroutine function, and awaiting it and isolating hooks from each other's errors is
  dispatch, not domain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from asemantic.domain.jobs import JobStatus
from asemantic.errors import InvalidInputError

__all__ = ["Stats", "TransitionEvent"]


class Stats(Mapping[str, int]):
    """An immutable, hashable ``str -> int`` mapping (counts such as sent/succeeded)."""

    __slots__ = ("_items",)

    def __init__(self, values: Mapping[str, int] | None = None) -> None:
        items: dict[str, int] = {}
        for key, value in (values or {}).items():
            if not isinstance(key, str) or not isinstance(value, int) or isinstance(value, bool):
                raise InvalidInputError(f"stats map names to integers, got {key!r}: {value!r}")
            items[key] = int(value)
        self._items = items

    def __getitem__(self, key: str) -> int:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Stats({self._items!r})"


def _empty_stats() -> Stats:
    return Stats()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionEvent:
    """A job moved from one status to another (already persisted when hooks see it)."""

    job_id: str
    remote_name: str | None
    from_status: JobStatus
    to_status: JobStatus
    at: datetime
    stats: Mapping[str, int] = field(default_factory=_empty_stats)
    space_id: int = 1
    """The embedding space the job embeds for: 1, the space the database was created
    with, or a space registered by a migration (:mod:`asemantic.domain.spaces`)."""

    def __post_init__(self) -> None:
        if isinstance(self.space_id, bool) or not isinstance(self.space_id, int):
            raise InvalidInputError("an event's space_id must be an integer")
        if self.space_id < 1:
            raise InvalidInputError("an event's space_id must be 1 or more")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise InvalidInputError("event times must be timezone-aware datetimes")
        object.__setattr__(self, "from_status", JobStatus(self.from_status))
        object.__setattr__(self, "to_status", JobStatus(self.to_status))
        if not isinstance(self.stats, Stats):
            object.__setattr__(self, "stats", Stats(self.stats))
