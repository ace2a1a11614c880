"""What a method is: feature perturbations, then a weighted sum of loss terms.

A method spec such as ``"cir+triplet"`` names registered components joined by ``+``. Each
component is a :class:`Loss` or a :class:`Perturbation` with a frozen dataclass ``Config``
holding the paper's defaults. :func:`build_method` turns a spec into a :class:`Method`, an
``nn.Module`` that the engine calls once per batch:

    terms = method(features, labels, head)   # {"triplet": ..., "total": ...}

``features`` (N, D) are the model's output embeddings, ``labels`` (N,) integer class ids, and
``head`` maps (possibly perturbed) features to logits (N, C), or is ``None`` when the task has no
classifier. Perturbations act in training mode only (``method.train()``); the engine never
branches on method names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cirbench.config import apply_overrides
from cirbench.errors import CirbenchError
from cirbench.registry import Registry

Head = Callable[[Tensor], Tensor]

#: What a task's model provides and a loss may require.
FEATURES = "features"
LOGITS = "logits"


@dataclass(frozen=True)
class MethodContext:
    """What a component needs to know about the task to build itself."""

    num_classes: int
    feature_dim: int


@dataclass(frozen=True)
class LossConfig:
    """Fields every loss has. ``weight`` multiplies the term in the total (default 1.0, ours)."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        # every loss config inherits this; a negative weight would train by gradient ascent
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


class Component(nn.Module):
    """A registered building block of a method. Subclasses set ``key`` and ``Config``."""

    key: ClassVar[str]
    Config: ClassVar[type[Any]]

    def __init__(self, cfg: Any, ctx: MethodContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.ctx = ctx

    def auxiliary_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimizers for the component's own parameters (e.g. center-loss centers)."""
        return []


class Loss(Component):
    """A loss term: ``forward(features, logits, labels) -> scalar``."""

    #: Subset of {FEATURES, LOGITS} this loss reads.
    requires: ClassVar[frozenset[str]] = frozenset({FEATURES})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        raise NotImplementedError


class Perturbation(Component):
    """Moves features in training mode: ``forward(features, labels) -> features``."""

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


METHODS: Registry[type[Component]] = Registry("method")


class Method(nn.Module):
    """Perturbations (applied in order, training only) and weighted losses."""

    def __init__(
        self, spec: MethodSpec, perturbations: list[Perturbation], losses: list[Loss]
    ) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.perturbations = nn.ModuleList(perturbations)
        self.losses = nn.ModuleDict({loss.key: loss for loss in losses})

    def loss_terms(self) -> list[Loss]:
        return [loss for loss in self.losses.values() if isinstance(loss, Loss)]

    def components(self) -> list[Component]:
        perts = [p for p in self.perturbations if isinstance(p, Perturbation)]
        return [*perts, *self.loss_terms()]

    @property
    def requires(self) -> frozenset[str]:
        return frozenset[str]().union(*(loss.requires for loss in self.loss_terms()))

    def configs(self) -> dict[str, dict[str, Any]]:
        """The resolved config of every component, for result records."""
        return {c.key: dataclasses.asdict(c.cfg) for c in self.components()}

    def auxiliary_optimizers(self) -> list[torch.optim.Optimizer]:
        return [opt for c in self.components() for opt in c.auxiliary_optimizers()]

    def forward(self, features: Tensor, labels: Tensor, head: Head | None) -> dict[str, Tensor]:
        for perturb in self.perturbations:
            features = perturb(features, labels)
        logits = head(features) if head is not None and LOGITS in self.requires else None
        terms: dict[str, Tensor] = {}
        total = features.new_zeros(())
        for loss in self.loss_terms():
            value = loss(features, logits, labels)
            terms[loss.key] = value.detach()
            total = total + loss.cfg.weight * value
        terms["total"] = total
        return terms


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: its perturbations, then its losses, each sorted (order-insensitive).

    Every module that needs to know what a method consists of asks this type; none names a
    component key.

    Examples:
        >>> import cirbench.methods  # registers the components
        >>> spec = MethodSpec.parse("triplet + ls + cir")
        >>> spec.name, spec.perturbations, spec.losses
        ('cir+ls+triplet', ('cir',), ('ls', 'triplet'))
        >>> spec.without_perturbations().name
        'ls+triplet'
    """

    perturbations: tuple[str, ...]
    losses: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> MethodSpec:
        """Parse ``"a+b+..."``; unknown, empty or repeated parts and a spec without a loss are
        user errors."""
        keys = [k.strip() for k in spec.split("+")]
        if any(not k for k in keys):
            raise CirbenchError(f"bad method spec {spec!r}: empty component between '+' signs")
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise CirbenchError(f"bad method spec {spec!r}: {', '.join(repeated)} given twice")
        classes = {k: METHODS.get(k) for k in keys}
        perts = tuple(sorted(k for k, c in classes.items() if issubclass(c, Perturbation)))
        losses = tuple(sorted(k for k, c in classes.items() if issubclass(c, Loss)))
        if not losses:
            raise CirbenchError(
                f"method {spec!r} has no loss: a perturbation only moves features; add a loss, "
                f"e.g. {'+'.join([*perts, 'triplet'])}"
            )
        return cls(perts, losses)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every component, perturbations first: also the ``--set`` sections the method reads."""
        return (*self.perturbations, *self.losses)

    @property
    def name(self) -> str:
        """The canonical spec, e.g. ``cir+ls+triplet``."""
        return "+".join(self.keys)

    def without_perturbations(self) -> MethodSpec:
        """The same losses without any perturbation: what a perturbation is tested against."""
        return MethodSpec((), self.losses)

    def __str__(self) -> str:
        return self.name


def component_config(
    key: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """The config of component ``key``: paper defaults, then the task's, then ``--set``'s;
    type- and domain-checked (a CirbenchError names the bad ``--set``)."""
    cfg = METHODS.get(key).Config()
    cfg = apply_overrides(cfg, (defaults or {}).get(key, {}), key)
    return apply_overrides(cfg, (overrides or {}).get(key, {}), key)


def check_sections(overrides: Mapping[str, Any], specs: Sequence[str]) -> None:
    """Every ``--set`` section must be ``train`` or a component of at least one method."""
    used = {key for spec in specs for key in MethodSpec.parse(spec).keys} | {"train"}
    for section in overrides:
        if section in used:
            continue
        if section in METHODS:
            raise CirbenchError(
                f"--set {section}.*: {section!r} is not part of any method run ({', '.join(specs)})"
            )
        raise CirbenchError(
            f"--set {section}.*: unknown section; use 'train' or a method component. "
            + METHODS.unknown_message(section)
        )


def build_method(
    spec: str,
    ctx: MethodContext,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Method:
    """Build the method named by ``spec``.

    ``defaults`` are a task's values for some fields (e.g. Circle loss m and gamma per task),
    applied over the paper defaults; ``overrides`` (from ``--set``) are applied last. Sections of
    either mapping that name components not in ``spec`` are ignored here; the CLI checks that
    every ``--set`` section is used by at least one method.

    Examples:
        >>> import torch
        >>> import cirbench.methods  # registers the components
        >>> method = build_method(
        ...     "triplet+cir", MethodContext(num_classes=4, feature_dim=8), {"cir": {"p": "1.0"}}
        ... )
        >>> method.name, method.perturbations[0].cfg.p, sorted(method.requires)
        ('cir+triplet', 1.0, ['features'])
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> terms = method(torch.randn(8, 8), labels, head=None)
        >>> sorted(terms), terms["total"].shape
        (['total', 'triplet'], torch.Size([]))
    """
    parsed = MethodSpec.parse(spec)
    perturbations: list[Perturbation] = []
    losses: list[Loss] = []
    for key in parsed.keys:
        comp = METHODS.get(key)(component_config(key, overrides, defaults), ctx)
        if isinstance(comp, Perturbation):
            perturbations.append(comp)
        else:
            assert isinstance(comp, Loss)
            losses.append(comp)
    return Method(parsed, perturbations, losses)


def check_requirements(spec: MethodSpec, provides: frozenset[str], task: str) -> None:
    """Raise a clear error when a loss needs an output the task's model does not have (read from
    the classes: a sweep checks every cell this way before launching any)."""
    for key in spec.losses:
        cls = METHODS.get(key)
        assert issubclass(cls, Loss)  # MethodSpec.parse put it among the losses
        missing = cls.requires - provides
        if missing:
            what = "a classifier (logits)" if LOGITS in missing else "embedding features"
            raise CirbenchError(
                f"method {spec.name!r}: loss {key!r} needs {what}, but task {task!r} "
                f"provides only {', '.join(sorted(provides))}"
            )
