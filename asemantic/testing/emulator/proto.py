"""A small proto3-JSON checker: unknown fields and wrong value types, as Google reports them.

Google's JSON front end accepts a field under its JSON name (``outputDimensionality``)
or its proto name (``output_dimensionality``) and rejects anything else with 400
INVALID_ARGUMENT. :func:`check` finds those problems; :func:`get` reads a field under
either name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Field", "Message", "Violation", "camel_to_snake", "check", "get"]

_PACKAGE = "type.googleapis.com/google.ai.generativelanguage.v1beta"


@functools.lru_cache(maxsize=1024)
def camel_to_snake(name: str) -> str:
    """``outputDimensionality`` -> ``output_dimensionality`` (cached: a batch of tens
    of thousands of requests asks for the same few names)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True, kw_only=True)
class Field:
    """One field: ``kind`` is string, int32, int64, bool, float, bytes, enum, message or any."""

    kind: str
    repeated: bool = False
    message: Message | None = None
    enum_name: str = ""
    enum_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Message:
    """A message type: its short name and its fields under their JSON (camelCase) names."""

    name: str
    fields: Mapping[str, Field] = field(default_factory=dict)

    @property
    def type_url(self) -> str:
        return f"{_PACKAGE}.{self.name}"

    def resolve(self, key: str) -> tuple[str, Field] | None:
        """The JSON name and field for ``key`` given in either spelling."""
        if key in self.fields:
            return key, self.fields[key]
        for json_name, spec in self.fields.items():
            if camel_to_snake(json_name) == key:
                return json_name, spec
        return None


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One problem: ``kind`` is ``unknown`` (no such field) or ``value`` (wrong type)."""

    kind: str
    name: str
    path: str
    message: str


def get(obj: Mapping[str, Any], json_name: str, default: Any = None) -> Any:
    """A field's value under its JSON name or its proto name."""
    if json_name in obj:
        return obj[json_name]
    return obj.get(camel_to_snake(json_name), default)


def check(value: Any, message: Message, path: str = "") -> list[Violation]:
    """All violations in ``value`` read as ``message`` (empty when it is well formed)."""
    if not isinstance(value, Mapping):
        return [_bad_value(path, message.type_url, value)]
    found: list[Violation] = []
    for key, item in value.items():
        resolved = message.resolve(key)
        if resolved is None:
            found.append(_unknown(key, path))
            continue
        json_name, spec = resolved
        found.extend(_check_field(item, spec, _join(path, camel_to_snake(json_name))))
    return found


def _check_field(value: Any, spec: Field, path: str) -> list[Violation]:
    if value is None:
        return []
    if not spec.repeated:
        return _check_single(value, spec, path)
    if not isinstance(value, list):
        return [_bad_value(path, _type_label(spec), value)]
    found: list[Violation] = []
    for index, item in enumerate(value):
        found.extend(_check_single(item, spec, f"{path}[{index}]"))
    return found


def _check_single(value: Any, spec: Field, path: str) -> list[Violation]:
    if spec.kind == "message":
        assert spec.message is not None
        return check(value, spec.message, path)
    if spec.kind == "any":
        return []
    if isinstance(value, dict | list):
        return [
            Violation(
                kind="value",
                name=path,
                path=path,
                message=f"Invalid value at '{path}' ({_type_label(spec)}), "
                "Starting an object on a scalar field",
            )
        ]
    if _scalar_ok(value, spec):
        return []
    return [_bad_value(path, _type_label(spec), value)]


def _scalar_ok(value: Any, spec: Field) -> bool:
    kind = spec.kind
    if kind in ("string", "bytes"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("int32", "int64"):
        return _as_int(value) is not None
    if kind == "enum":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return 0 <= value < len(spec.enum_values)
        return value in spec.enum_values
    return True


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _type_label(spec: Field) -> str:
    if spec.kind == "message" and spec.message is not None:
        return spec.message.type_url
    if spec.kind == "enum":
        return f"{_PACKAGE}.{spec.enum_name}"
    return f"TYPE_{spec.kind.upper()}"


def _bad_value(path: str, label: str, value: Any) -> Violation:
    shown = json.dumps(value, ensure_ascii=False)
    return Violation(
        kind="value", name=path, path=path, message=f"Invalid value at '{path}' ({label}), {shown}"
    )


def _unknown(key: str, path: str) -> Violation:
    where = f" at '{path}'" if path else ""
    return Violation(
        kind="unknown",
        name=key,
        path=path,
        message=f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.',
    )


def _join(path: str, name: str) -> str:
    if not name:
        return path
    return f"{path}.{name}" if path else name
