"""The search filter language: a plain mapping parsed into a typed, validated tree.

A filter is a mapping of *fields* to *conditions*, every entry ANDed::

    {"lang": "en"}                                  # implicit equality (as ever)
    {"year": {"$gte": 2020, "$lt": 2025}}           # operators, ANDed
    {"tags": {"$in": ["a", "b"]}, "draft": {"$exists": False}}
    {"$or": [{"lang": "en"}, {"lang": "de"}], "source": {"$ne": "old.md"}}

Fields are document metadata keys (top-level keys, taken literally: ``"a.b"`` is the
key ``a.b``) and four built-in fields: ``document_id`` (int), ``source`` (str),
``created_at`` and ``updated_at`` (the document row's stamps). ``$or`` and ``$and``
take a non-empty list of non-empty filters. :func:`parse_filter` turns a mapping into
a :data:`Filter`; :func:`evaluate` is the reference evaluator every engine's compiled
form agrees with (the memory engine runs it as it is).

Decisions (the same on every engine):

* **Equality is JSON-typed.** ``1`` matches ``1`` and ``1.0`` but not ``true`` nor
  ``"1"``; ``null`` matches an explicit null only; arrays and objects match whole, as
  canonical JSON (no element matching: ``{"tags": "a"}`` does not match
  ``["a", "b"]``).
* **Ranges are type-bracketed.** ``$gt $gte $lt $lte`` take a number or a string (on
  metadata); a number bound matches numbers only (booleans are not numbers), a string
  bound strings only, compared by code point (UTF-8 byte order). Null, booleans,
  arrays and objects have no order: such a bound is refused. A key that is missing or
  of another type does not match.
* **A missing key** matches ``$exists: false``, ``$ne`` and ``$nin`` and nothing else:
  ``$ne`` is exactly "not ``$eq``" and ``$nin`` "not ``$in``" (a key holding null is
  present). ``$in: []`` matches nothing and ``$nin: []`` everything.
* **Built-in fields** always exist, so ``$exists`` does not apply to them.
  ``document_id`` takes ints, ``source`` strings (a valid source: no NUL, not blank),
  and a plain list on either means ``$in`` (as before). ``created_at`` and
  ``updated_at`` take aware :class:`~datetime.datetime` values or ISO 8601 strings with
  a UTC offset (``"2025-01-31T12:00:00+00:00"``, ``"...Z"``); a naive time is refused
  (it names no instant). Times compare as instants, to the microsecond.
* **Keys starting with ``$``** are operators: an unknown one is refused, never taken
  for a metadata key. ``SearchFilters(metadata={...})`` still matches any key
  literally.
* Every malformed filter raises :class:`~asemantic.errors.InvalidInputError` naming the
  operator (or the field) at fault, before anything is read or sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias

from asemantic.domain.documents import JSONValue
from asemantic.domain.hashing import MAX_JSON_DEPTH, validate_metadata
from asemantic.domain.text import check_name
from asemantic.errors import InvalidInputError

__all__ = [
    "AllOf",
    "AnyOf",
    "BUILTIN_FIELDS",
    "Condition",
    "FieldCondition",
    "Filter",
    "FilterRecord",
    "KeyCondition",
    "MATCH_ALL",
    "Not",
    "OPERATORS",
    "Operand",
    "RANGE_OPERATORS",
    "all_of",
    "canonical",
    "evaluate",
    "json_kind",
    "parse_filter",
    "reads_metadata",
]

BUILTIN_FIELDS = ("document_id", "source", "created_at", "updated_at")
"""The fields every document has (all other fields are metadata keys)."""

OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
"""The field operators."""

RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")
_TIME_FIELDS = ("created_at", "updated_at")
_COMBINERS = ("$or", "$and")

Operand: TypeAlias = "JSONValue | datetime | tuple[JSONValue | datetime, ...]"
"""What a condition compares with: a JSON value, a UTC datetime (time fields), a
tuple of those (``$in``) or a bool (``$exists``)."""


@dataclass(frozen=True, slots=True)
class KeyCondition:
    """A condition on document metadata ``key``.

    ``op`` is ``$eq``, ``$in`` (``value`` a tuple), ``$gt``/``$gte``/``$lt``/``$lte``
    (``value`` a number or a string) or ``$exists`` (``value`` True: the key is present).
    ``$ne``, ``$nin`` and ``$exists: false`` are these under :class:`Not`.
    """

    key: str
    op: str
    value: Operand


@dataclass(frozen=True, slots=True)
class FieldCondition:
    """A condition on a built-in field (:data:`BUILTIN_FIELDS`); ops as
    :class:`KeyCondition` but never ``$exists``. Times are aware UTC datetimes."""

    field: str
    op: str
    value: Operand


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every part matches (no parts: everything matches)."""

    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one part matches (never empty once parsed)."""

    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The part does not match."""

    part: Filter


Condition: TypeAlias = KeyCondition | FieldCondition
Filter: TypeAlias = "KeyCondition | FieldCondition | AllOf | AnyOf | Not"
"""A parsed filter: a tree of conditions."""

MATCH_ALL = AllOf(())
"""The filter that restricts nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterRecord:
    """What a filter sees of a document (for :func:`evaluate`)."""

    document_id: int
    source: str
    created_at: datetime
    updated_at: datetime
    metadata: Mapping[str, JSONValue]


def all_of(parts: Sequence[Filter]) -> Filter:
    """The AND of ``parts``, flattened (one part is itself; none is :data:`MATCH_ALL`)."""
    flat: list[Filter] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, AllOf) else (part,))
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat))


# --------------------------------------------------------------------------- parsing


def parse_filter(filters: Mapping[str, object]) -> Filter:
    """Parse and validate a filter mapping (see the module docstring).

    Raises :class:`InvalidInputError` naming the operator or field at fault.
    """
    return _parse_mapping(filters, depth=0, where="filters")


def _parse_mapping(filters: object, *, depth: int, where: str) -> Filter:
    if not isinstance(filters, Mapping):
        raise InvalidInputError(f"{where} must be a mapping, not {type(filters).__name__}")
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"filters nest $or/$and deeper than {MAX_JSON_DEPTH} levels")
    parts: list[Filter] = []
    for name, condition in filters.items():
        if not isinstance(name, str):
            raise InvalidInputError("filter fields must be strings")
        if name in _COMBINERS:
            parts.append(_parse_combiner(name, condition, depth=depth))
        elif name.startswith("$"):
            if name in OPERATORS:
                raise InvalidInputError(
                    f"filter operator {name} needs a field: {{'field': {{{name!r}: ...}}}}"
                )
            raise InvalidInputError(f"unknown filter operator {name}")
        elif name in BUILTIN_FIELDS:
            parts.append(_parse_builtin(name, condition))
        else:
            parts.append(_parse_metadata(name, condition))
    return all_of(parts)


def _parse_combiner(name: str, value: object, *, depth: int) -> Filter:
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"{name} takes a list of filters, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{name} takes a non-empty list of filters")
    parts: list[Filter] = []
    for item in value:
        if isinstance(item, Mapping) and not item:
            raise InvalidInputError(f"{name} takes non-empty filters ({{}} matches everything)")
        parts.append(_parse_mapping(item, depth=depth + 1, where=f"each filter of {name}"))
    if name == "$and":
        return all_of(parts)
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


def _operators(name: str, condition: object) -> Mapping[str, object] | None:
    """The operator object of a field, or None when ``condition`` is a plain value."""
    if not isinstance(condition, Mapping) or not condition:
        return None
    keys = [k for k in condition if isinstance(k, str) and k.startswith("$")]
    if not keys:
        return None
    if len(keys) != len(condition):
        plain = next(k for k in condition if not (isinstance(k, str) and k.startswith("$")))
        raise InvalidInputError(
            f"filter {name!r} mixes operators ({keys[0]}) with plain keys ({plain!r}); "
            f"to match an object with such keys use {{'$eq': ...}}"
        )
    for op in keys:
        if op in _COMBINERS:
            raise InvalidInputError(f"{op} combines filters; it cannot apply to field {name!r}")
        if op not in OPERATORS:
            raise InvalidInputError(f"unknown filter operator {op} (on field {name!r})")
    return condition


def _parse_metadata(key: str, condition: object) -> Filter:
    validate_metadata({key: None})  # the key as a metadata key (no lone surrogate)
    operators = _operators(key, condition)
    if operators is None:
        return KeyCondition(key, "$eq", _json(key, "$eq", condition))
    parts: list[Filter] = []
    for op, value in operators.items():
        assert isinstance(op, str)
        if op == "$exists":
            if not isinstance(value, bool):
                raise InvalidInputError(
                    f"filter {key!r}: $exists takes true or false, not {_type(value)}"
                )
            present = KeyCondition(key, "$exists", True)
            parts.append(present if value else Not(present))
        elif op in ("$in", "$nin"):
            items = _list(key, op, value)
            test = KeyCondition(key, "$in", tuple(_json(key, op, item) for item in items))
            parts.append(test if op == "$in" else Not(test))
        elif op in RANGE_OPERATORS:
            bound = _json(key, op, value)
            if isinstance(bound, bool) or not isinstance(bound, int | float | str):
                raise InvalidInputError(
                    f"filter {key!r}: {op} takes a number or a string, not {_type(bound)}"
                )
            parts.append(KeyCondition(key, op, bound))
        else:
            test = KeyCondition(key, "$eq", _json(key, op, value))
            parts.append(test if op == "$eq" else Not(test))
    return all_of(parts)


def _parse_builtin(name: str, condition: object) -> Filter:
    operators = _operators(name, condition)
    if operators is None:
        if isinstance(condition, list | tuple) and name in ("document_id", "source"):
            operators = {"$in": condition}
        else:
            operators = {"$eq": condition}
    parts: list[Filter] = []
    for op, value in operators.items():
        assert isinstance(op, str)
        if op == "$exists":
            raise InvalidInputError(
                f"filter {name!r}: $exists does not apply to a built-in field (it always exists)"
            )
        if op in ("$in", "$nin"):
            items = tuple(_builtin_value(name, op, item) for item in _list(name, op, value))
            test = FieldCondition(name, "$in", items)
            parts.append(test if op == "$in" else Not(test))
        else:
            test = FieldCondition(
                name, "$eq" if op == "$ne" else op, _builtin_value(name, op, value)
            )
            parts.append(Not(test) if op == "$ne" else test)
    return all_of(parts)


def _builtin_value(name: str, op: str, value: object) -> JSONValue | datetime:
    if name == "document_id":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(
                f"filter 'document_id': {op} takes int values, not {_type(value)}"
            )
        return value
    if name == "source":
        if not isinstance(value, str):
            raise InvalidInputError(f"filter 'source': {op} takes str values, not {_type(value)}")
        return check_name(value, what=f"a source filter ({op})")
    return _instant(name, op, value)


def _instant(name: str, op: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInputError(
                f"filter {name!r}: {op} takes an ISO 8601 time, not {value[:40]!r}"
            ) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise InvalidInputError(
            f"filter {name!r}: {op} takes a datetime or an ISO 8601 string, not {_type(value)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInputError(
            f"filter {name!r}: {op} needs a time with a UTC offset (a naive time names no instant)"
        )
    return moment.astimezone(UTC)


def _list(name: str, op: str, value: object) -> list[object]:
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"filter {name!r}: {op} takes a list, not {_type(value)}")
    return list(value)


def _json(key: str, op: str, value: object) -> JSONValue:
    """``value`` checked as a JSON value (as metadata is), the error naming ``op``."""
    try:
        return validate_metadata({"value": value})["value"]
    except InvalidInputError as error:  # the same class (UndecodableTextError stays one)
        raise type(error)(f"filter {key!r}: {op} takes a JSON value ({error})") from None


def _type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- evaluation


def json_kind(value: object) -> str:
    """The JSON type of ``value`` as equality brackets it: ``null``, ``true``,
    ``false``, ``number``, ``text``, ``array`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "array" if isinstance(value, list | tuple) else "object"


def canonical(value: JSONValue) -> str:
    """Canonical JSON (sorted keys, no spaces), as metadata is stored."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _json_equal(stored: JSONValue, wanted: JSONValue) -> bool:
    kind = json_kind(wanted)
    if json_kind(stored) != kind:
        return False
    if kind in ("array", "object"):
        return canonical(stored) == canonical(wanted)
    return stored == wanted


def _ordered(stored: object, op: str, bound: object) -> bool:
    """``stored op bound`` with type bracketing (numbers with numbers, text with text)."""
    if isinstance(bound, datetime):
        if not isinstance(stored, datetime):
            return False
        return _compare(stored, op, bound)
    if isinstance(bound, str):
        return isinstance(stored, str) and _compare(stored, op, bound)
    if isinstance(bound, bool) or not isinstance(bound, int | float):
        return False
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    if isinstance(stored, float) and not math.isfinite(stored):
        return False
    return _compare(stored, op, bound)


def _compare(a: object, op: str, b: object) -> bool:
    # ints and floats compare exactly in Python, as in SQLite and PostgreSQL numeric.
    if op == "$gt":
        return bool(a > b)  # type: ignore[operator]
    if op == "$gte":
        return bool(a >= b)  # type: ignore[operator]
    if op == "$lt":
        return bool(a < b)  # type: ignore[operator]
    return bool(a <= b)  # type: ignore[operator]


def _field(record: FilterRecord, name: str) -> int | str | datetime:
    value: int | str | datetime = getattr(record, name)
    return value


def reads_metadata(expression: Filter) -> bool:
    """Whether ``expression`` has a condition on metadata (else only built-in fields)."""
    if isinstance(expression, AllOf | AnyOf):
        return any(reads_metadata(part) for part in expression.parts)
    if isinstance(expression, Not):
        return reads_metadata(expression.part)
    return isinstance(expression, KeyCondition)


def evaluate(expression: Filter, record: FilterRecord) -> bool:
    """Whether ``record`` matches ``expression`` (the reference semantics)."""
    if isinstance(expression, AllOf):
        return all(evaluate(part, record) for part in expression.parts)
    if isinstance(expression, AnyOf):
        return any(evaluate(part, record) for part in expression.parts)
    if isinstance(expression, Not):
        return not evaluate(expression.part, record)
    if isinstance(expression, FieldCondition):
        value = _field(record, expression.field)
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        if expression.op == "$eq":
            return value == expression.value
        if expression.op == "$in":
            assert isinstance(expression.value, tuple)
            return value in expression.value
        return _ordered(value, expression.op, expression.value)
    metadata = record.metadata
    if expression.key not in metadata:
        return False
    stored = metadata[expression.key]
    if expression.op == "$exists":
        return True
    if expression.op == "$eq":
        return _json_equal(stored, expression.value)  # type: ignore[arg-type]
    if expression.op == "$in":
        assert isinstance(expression.value, tuple)
        return any(_json_equal(stored, item) for item in expression.value)  # type: ignore[arg-type]
    return _ordered(stored, expression.op, expression.value)
