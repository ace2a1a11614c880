"""Typed ``--set section.field=value`` overrides applied to frozen dataclass configs.

Configs are frozen dataclasses whose defaults are the papers' values. An override is parsed
against the field's annotation (``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, or an
optional of one of these), so ``--set triplet.margin=abc`` is an error, not a silent string.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from cirbench.errors import CirbenchError

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["triplet.margin=0.5", "train.epochs=3"]`` -> ``{"triplet": {"margin": "0.5"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not section or not field:
            raise CirbenchError(
                f"bad --set {item!r}: expected SECTION.FIELD=VALUE, e.g. triplet.margin=0.5"
            )
        if field in out.setdefault(section, {}):
            raise CirbenchError(f"--set {key} is given twice")
        out[section][field] = value.strip()
    return out


def convert(value: str, annotation: Any, where: str) -> Any:
    """Parse ``value`` as ``annotation``; raise a CirbenchError naming ``where`` on failure."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise CirbenchError(f"{where}={value!r}: must be one of {', '.join(map(str, choices))}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value.lower() in {"none", "null"}:
            return None
        if len(args) == 1:
            return convert(value, args[0], where)
    if origin is tuple:
        (item, ellipsis) = typing.get_args(annotation)
        assert ellipsis is Ellipsis, "only tuple[T, ...] fields are supported"
        parts = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(convert(v, item, where) for v in parts)
    if annotation is bool:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise CirbenchError(f"{where}={value!r}: expected true or false")
    if annotation in (int, float):
        try:
            if not value.isascii():  # int() and float() take other scripts' digits too
                raise ValueError(value)
            number = annotation(value)
        except ValueError:
            raise CirbenchError(f"{where}={value!r}: expected {annotation.__name__}") from None
        if not math.isfinite(number):
            raise CirbenchError(f"{where}={value!r}: expected a finite number")
        return number
    if annotation is str:
        return value
    raise TypeError(f"{where}: unsupported field type {annotation!r}")


def apply_overrides(config: C, values: Mapping[str, Any], section: str) -> C:
    """Return a copy of the dataclass ``config`` with ``values`` (strings or typed) applied."""
    assert dataclasses.is_dataclass(config) and not isinstance(config, type)
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in fields:
            raise CirbenchError(
                f"--set {section}.{name}: {section} has no field {name!r}; "
                f"its fields are {', '.join(sorted(fields))}"
            )
        where = f"--set {section}.{name}"
        changes[name] = convert(raw, hints[name], where) if isinstance(raw, str) else raw
    try:
        new = dataclasses.replace(config, **changes)
        validate = getattr(new, "validate", None)
        if callable(validate):
            validate()
    except ValueError as exc:
        raise CirbenchError(f"--set {section}: {exc}") from None
    return new


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config."""
    return dataclasses.asdict(config)
