"""Typed ``--set section.field=value`` overrides applied to frozen dataclass configs.

Configs are frozen dataclasses whose defaults are the papers' values. An override is parsed
against the field's annotation (``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, or an
optional of one of these), so ``--set triplet.margin=abc`` is an error, not a silent string.

Configs also declare the search ranges of their tunable fields (:class:`FloatRange`,
:class:`IntRange`, :class:`Choice`) in a ``search_space`` class variable beside the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from cirbench.errors import CirbenchError

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Overrides(Mapping[str, Mapping[str, str]]):
    """``--set SECTION.FIELD=VALUE`` items in their one canonical form.

    A read-only mapping section -> {field: raw value}, sorted by section and field, each field
    once. The same object is what the CLI parses, what a sweep cell carries, what a record stores
    (:meth:`as_list`) and what tables group by (``str``, the items joined by spaces).

    Examples:
        >>> o = Overrides.parse(["train.epochs=3", "cir.p=0.2"])
        >>> str(o), dict(o["cir"])
        ('cir.p=0.2 train.epochs=3', {'p': '0.2'})
        >>> str(o.without(["cir"])), str(Overrides.parse(str(o).split())) == str(o)
        ('train.epochs=3', True)
    """

    def __init__(self, items: Iterable[tuple[str, str, str]] = ()) -> None:
        self._items = tuple(sorted(items))
        self._table: dict[str, dict[str, str]] = {}
        for section, field, value in self._items:
            self._table.setdefault(section, {})[field] = value

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Overrides:
        """From ``SECTION.FIELD=VALUE`` strings; a malformed or repeated field is a user error."""
        items: dict[tuple[str, str], str] = {}
        for text in texts:
            key, sep, value = text.partition("=")
            section, dot, field = key.strip().partition(".")
            if not sep or not dot or not section or not field:
                raise CirbenchError(
                    f"bad --set {text!r}: expected SECTION.FIELD=VALUE, e.g. triplet.margin=0.5"
                )
            if (section, field) in items:
                raise CirbenchError(f"--set {key.strip()} is given twice")
            items[section, field] = value.strip()
        return cls((section, field, value) for (section, field), value in items.items())

    @classmethod
    def from_yaml(cls, path: Path) -> Overrides:
        """The ``--config FILE.yaml`` form: ``section: {field: value}`` mappings, the same items
        as ``--set section.field=value`` (lists for tuple fields, ``null`` for None), checked
        the same way when applied."""
        where = f"--config {path}"
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CirbenchError(f"{where}: cannot read it ({exc.strerror or exc})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CirbenchError(f"{where}: not YAML ({str(exc).splitlines()[0]})") from None
        if raw is None:
            return cls()
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise CirbenchError(
                f"{where}: expected sections of fields, e.g. 'train: {{epochs: 3}}' and "
                "'cir: {p: 0.2}'"
            )
        items = []
        for section, fields in raw.items():
            for field, value in fields.items():
                if isinstance(value, dict):
                    raise CirbenchError(f"{where}: {section}.{field} is a mapping, not a value")
                items.append((str(section), str(field), _as_text(value)))
        return cls(items)

    def then(self, later: Overrides) -> Overrides:
        """These items, with ``later``'s replacing any field both set (file first, then flags)."""
        keys = {(s, f) for s, f, _ in later._items}
        return Overrides([*(i for i in self._items if (i[0], i[1]) not in keys), *later._items])

    def __getitem__(self, section: str) -> Mapping[str, str]:
        return MappingProxyType(self._table[section])

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __hash__(self) -> int:
        return hash(self._items)

    def __str__(self) -> str:
        return " ".join(self.as_list())

    def __repr__(self) -> str:
        return f"Overrides.parse({self.as_list()!r})"

    def section(self, name: str) -> Mapping[str, str]:
        """The fields set in section ``name`` (empty when none)."""
        return self[name] if name in self._table else MappingProxyType({})

    def as_list(self) -> list[str]:
        """``["section.field=value", ...]``: the form records store and ``--set`` takes."""
        return [f"{section}.{field}={value}" for section, field, value in self._items]

    def only(self, sections: Collection[str]) -> Overrides:
        return Overrides(item for item in self._items if item[0] in sections)

    def without(self, sections: Collection[str]) -> Overrides:
        return Overrides(item for item in self._items if item[0] not in sections)

    def without_fields(self, names: Collection[str]) -> Overrides:
        """These items but those whose ``section.field`` is in ``names``."""
        return Overrides(item for item in self._items if f"{item[0]}.{item[1]}" not in names)


def _as_text(value: object) -> str:
    """A YAML value as the text ``--set`` would give for it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_as_text(v) for v in value)
    return str(value)


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


@dataclass(frozen=True)
class FloatRange:
    """A search range of a float field: ``[low, high]``, uniform or log-uniform."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """A search range of an int field: integers ``low..high``, uniform or log-uniform."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """A finite set of values of a field (str / bool / int / float)."""

    values: tuple[str | bool | int | float, ...]


#: One searchable dimension; configs declare theirs as ``search_space: ClassVar[SearchSpace]``
#: beside their defaults, and :mod:`cirbench.space` narrows them from the command line.
Domain = FloatRange | IntRange | Choice
SearchSpace = Mapping[str, Domain]


def declared_space(config: Any) -> SearchSpace:
    """The ranges the config class of ``config`` declares for its tunable fields (may be none)."""
    space: SearchSpace = getattr(type(config), "search_space", {})
    return space


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
