"""Search spaces of a (task, method): the ranges each config declares beside its defaults,
narrowed or widened from the command line.

Every config class may declare ``search_space`` (``cirbench.config.FloatRange`` / ``IntRange``
/ ``Choice`` per tunable field): ``TrainConfig`` (``train.lr``, log-uniform), ``cir`` (``p``,
``strength``, ``target``, ``centroids``), ``triplet.margin``, ``ls.eps``. The space of a method
is ``train``'s plus that of each of its components. ``--space SECTION.FIELD=SPEC`` replaces one
dimension or adds one for any other numeric or choice field: ``LOW:HIGH`` (``:log`` for
log-uniform) for an int or float field, ``A,B,...`` for a set of values (one value fixes the
field). Each bound and value is parsed against the field's annotation and checked by the config's
``validate()``, exactly as ``--set`` is (:func:`cirbench.config.apply_overrides`), so a bad item
is one CirbenchError line before anything trains.

Examples:
    >>> from cirbench.tasks import TASKS
    >>> task = TASKS.get("digits")()
    >>> space = method_space(task, "cir+ce", task.profile("smoke"))
    >>> sorted(space)
    ['cir.centroids', 'cir.p', 'cir.strength', 'cir.target', 'train.lr']
    >>> items = parse_space(["cir.p=0.1:0.9"])
    >>> narrow(space, items, task, "cir+ce", task.profile("smoke"))["cir.p"]
    FloatRange(low=0.1, high=0.9, log=False)
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cirbench.config import (
    Choice,
    Domain,
    FloatRange,
    IntRange,
    Overrides,
    apply_overrides,
    convert,
    declared_space,
)
from cirbench.engine import TrainConfig
from cirbench.errors import CirbenchError
from cirbench.methods import METHODS, MethodSpec
from cirbench.methods.base import component_config
from cirbench.tasks import AnyTask

#: A method's space: ``"section.field"`` -> its domain, in a fixed (sorted) order.
Space = dict[str, Domain]


@dataclass(frozen=True)
class SpaceItem:
    """One ``--space SECTION.FIELD=SPEC`` item, not yet checked against a config."""

    section: str
    field: str
    spec: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.field}"


def parse_space(texts: Iterable[str]) -> list[SpaceItem]:
    """``--space`` items; a malformed or repeated one is a user error."""
    items: dict[str, SpaceItem] = {}
    for text in texts:
        key, sep, spec = text.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not section or not field or not spec.strip():
            raise CirbenchError(
                f"bad --space {text!r}: expected SECTION.FIELD=LOW:HIGH[:log] or "
                "SECTION.FIELD=A,B,..., e.g. cir.p=0.1:0.9 or cir.target=mean,random"
            )
        item = SpaceItem(section, field.strip(), spec.strip())
        if item.name in items:
            raise CirbenchError(f"--space {item.name} is given twice")
        items[item.name] = item
    return list(items.values())


def section_configs(task: AnyTask, spec: str, cfg: TrainConfig) -> dict[str, Any]:
    """The configs a method's run reads, by section: ``train`` and each component's (paper
    defaults, then the task's)."""
    keys = MethodSpec.parse(spec).keys
    return {"train": cfg, **{k: component_config(k, None, task.method_defaults) for k in keys}}


def method_space(task: AnyTask, spec: str, cfg: TrainConfig) -> Space:
    """The declared space of ``spec`` on ``task``: train's dimensions and its components'."""
    space: Space = {}
    for section, config in section_configs(task, spec, cfg).items():
        for field, domain in declared_space(config).items():
            space[f"{section}.{field}"] = domain
    return dict(sorted(space.items()))


def check_space_sections(items: Sequence[SpaceItem], specs: Sequence[str]) -> None:
    """Every ``--space`` section is ``train`` or a component of at least one method tuned."""
    used = {key for spec in specs for key in MethodSpec.parse(spec).keys} | {"train"}
    for item in items:
        if item.section not in used:
            known = "" if item.section in METHODS else " " + METHODS.unknown_message(item.section)
            raise CirbenchError(
                f"--space {item.name}: {item.section!r} is not 'train' nor a component of the "
                f"methods tuned ({', '.join(specs)}).{known}"
            )


def narrow(
    space: Mapping[str, Domain],
    items: Sequence[SpaceItem],
    task: AnyTask,
    spec: str,
    cfg: TrainConfig,
) -> Space:
    """``space`` with each ``--space`` item of ``spec``'s sections replacing (or adding) its
    dimension; items of sections this method does not have are left out."""
    configs = section_configs(task, spec, cfg)
    out = dict(space)
    for item in items:
        if item.section in configs:
            out[item.name] = parse_domain(item, configs[item.section], space.get(item.name))
    return dict(sorted(out.items()))


def parse_domain(item: SpaceItem, config: Any, declared: Domain | None) -> Domain:
    """The domain ``item`` gives its field of ``config``, type- and validate()-checked."""
    where = f"--space {item.name}"
    hints = typing.get_type_hints(type(config))
    fields = {f for f in hints if f in getattr(config, "__dataclass_fields__", {})}
    if item.field not in fields:
        raise CirbenchError(
            f"{where}: {item.section} has no field {item.field!r}; its fields are "
            f"{', '.join(sorted(fields))}"
        )
    annotation = hints[item.field]
    parts = item.spec.split(":")
    if len(parts) == 1:
        values = [_value(v.strip(), annotation, config, item) for v in item.spec.split(",")]
        if not all(isinstance(v, str | bool | int | float) for v in values):
            raise CirbenchError(f"{where}: a set of values needs a str, bool or number field")
        return Choice(tuple(dict.fromkeys(values)))
    if annotation not in (int, float):
        raise CirbenchError(
            f"{where}={item.spec!r}: LOW:HIGH ranges are for int or float fields; "
            f"{item.name} takes a set of values, e.g. {item.name}=A,B"
        )
    if len(parts) > 3 or (len(parts) == 3 and parts[2].strip() not in ("log", "linear")):
        raise CirbenchError(f"{where}={item.spec!r}: expected LOW:HIGH, LOW:HIGH:log or :linear")
    low = _value(parts[0].strip(), annotation, config, item)
    high = _value(parts[1].strip(), annotation, config, item)
    log = parts[2].strip() == "log" if len(parts) == 3 else getattr(declared, "log", False)
    if low > high:
        raise CirbenchError(f"{where}={item.spec!r}: LOW must not exceed HIGH")
    if log and low <= 0:
        raise CirbenchError(f"{where}={item.spec!r}: a log range needs LOW > 0")
    return FloatRange(low, high, log) if annotation is float else IntRange(low, high, log)


def _value(text: str, annotation: Any, config: Any, item: SpaceItem) -> Any:
    """One value as ``--set`` would parse and validate it (the message names ``--space``)."""
    where = f"--space {item.name}"
    value = convert(text, annotation, where)
    try:
        apply_overrides(config, {item.field: value}, item.section)
    except CirbenchError as exc:
        raise CirbenchError(str(exc).replace("--set", "--space", 1)) from None
    return value


def space_json(space: Mapping[str, Domain]) -> dict[str, dict[str, Any]]:
    """``space`` as JSON-able dicts (what a tuning record stores, so a report can rebuild the
    study's distributions from records alone); :func:`space_from_json` reads it back.

    >>> space_from_json(space_json({"cir.p": FloatRange(0.0, 1.0)}))
    {'cir.p': FloatRange(low=0.0, high=1.0, log=False)}
    """
    out: dict[str, dict[str, Any]] = {}
    for name, domain in space.items():
        if isinstance(domain, Choice):
            out[name] = {"choice": list(domain.values)}
        else:
            kind = "float" if isinstance(domain, FloatRange) else "int"
            out[name] = {kind: [domain.low, domain.high], "log": domain.log}
    return out


def space_from_json(data: Mapping[str, Mapping[str, Any]]) -> Space:
    """The space :func:`space_json` wrote; a malformed entry is a CirbenchError."""
    space: Space = {}
    for name, entry in data.items():
        if "choice" in entry:
            space[name] = Choice(tuple(entry["choice"]))
        elif "float" in entry:
            low, high = entry["float"]
            space[name] = FloatRange(float(low), float(high), bool(entry.get("log", False)))
        elif "int" in entry:
            low, high = entry["int"]
            space[name] = IntRange(int(low), int(high), bool(entry.get("log", False)))
        else:
            raise CirbenchError(f"search space entry {name!r} is not choice, float or int: {entry}")
    return space


def as_text(value: object) -> str:
    """A sampled value as the ``--set`` text that parses back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def to_overrides(base: Overrides, values: Mapping[str, object]) -> Overrides:
    """``base`` with the sampled ``{"section.field": value}`` set over it."""
    items = [(*name.split(".", 1), as_text(value)) for name, value in values.items()]
    return base.then(Overrides((section, field, text) for section, field, text in items))
