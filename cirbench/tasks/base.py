"""What a task is: data in its canonical form, a model recipe, training profiles, an evaluation
protocol, and per-task method defaults.

A task class is registered under the word users type, its ``name`` (``@TASKS.register``). The CLI
and the runner use only this interface; docs/ARCHITECTURE.md lists every file a new task touches.

A task is generic over its config and its data, ``Task[MarketConfig, MarketData]``: its methods
receive exactly those types. The one downcast, from the profile table's ``TrainConfig`` to the
task's config class, happens in :meth:`Task.profile`; everything downstream (``--set`` overrides
keep the type, ``load`` returns the task's data class) stays typed.

Examples:
    >>> from cirbench.tasks import TASKS
    >>> task = TASKS.get("digits")()
    >>> cfg = task.profile("smoke")
    >>> type(cfg).__name__, cfg.epochs
    ('TrainConfig', 2)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch

from cirbench.data.holdout import VAL_FRACTION, VAL_SEED
from cirbench.engine import Batches, Evaluation, TrainConfig
from cirbench.errors import CirbenchError, did_you_mean
from cirbench.methods.base import Method
from cirbench.models import EmbeddingNet
from cirbench.registry import Registry


@dataclass(frozen=True)
class TaskData:
    """What every task's loaded data has; each task subclasses it with its own typed splits."""

    num_classes: int  # size of the training label space (classification heads, OIM tables)
    fingerprint: str  # identifies the exact data used, for result records


def val_fingerprint(fingerprint: str) -> str:
    """The fingerprint of the validation hold-out carved from data of ``fingerprint``."""
    return f"{fingerprint}:val(seed={VAL_SEED},fraction={VAL_FRACTION})"


ConfigT = TypeVar("ConfigT", bound=TrainConfig)
DataT = TypeVar("DataT", bound=TaskData)


@dataclass(frozen=True)
class EvalContext(Generic[ConfigT, DataT]):
    """What a task's evaluation sees: the trained model and its method (in eval mode), the
    task's data, the run's config and the device."""

    model: EmbeddingNet
    method: Method
    data: DataT
    cfg: ConfigT
    device: torch.device


class Task(ABC, Generic[ConfigT, DataT]):
    name: ClassVar[str]
    #: The task's config class; every profile is one (checked by :meth:`profile`).
    config_type: ClassVar[type[TrainConfig]] = TrainConfig
    #: Entry in datasets.yaml.
    dataset: ClassVar[str]
    #: What the task's model outputs: subset of {"features", "logits"}.
    provides: ClassVar[frozenset[str]]
    #: What ``cirbench run TASK`` runs when no --method is given.
    default_methods: ClassVar[tuple[str, ...]]
    profiles: ClassVar[Mapping[str, TrainConfig]]
    default_profile: ClassVar[str]
    #: Task-specific values for method fields (over the papers' defaults, under --set).
    method_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Every metric the task's evaluation reports (fractions), in the order tables show them;
    #: the vocabulary of reported.yaml entries for the task.
    metrics: ClassVar[tuple[str, ...]] = ()
    #: The metrics where smaller is better (e.g. ``error``); all others: larger is better.
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    #: The metrics that are 95% interval half-widths of another one: shown, never ranked or
    #: tested.
    intervals: ClassVar[frozenset[str]] = frozenset()

    def profile(self, name: str | None) -> ConfigT:
        """The named profile (the default one for ``None``) as the task's config type."""
        name = name or self.default_profile
        if name not in self.profiles:
            raise CirbenchError(
                f"task {self.name!r} has no profile {name!r}.{did_you_mean(name, self.profiles)} "
                f"Its profiles: {', '.join(self.profiles)}."
            )
        cfg = self.profiles[name]
        if not isinstance(cfg, self.config_type):
            raise TypeError(
                f"{self.name}: profile {name!r} is a {type(cfg).__name__}, "
                f"not the task's {self.config_type.__name__}"
            )
        return cast(ConfigT, cfg)  # config_type is ConfigT's class: the one downcast

    @abstractmethod
    def load(self, data_root: Path) -> DataT:
        """Read the dataset; raise CirbenchError telling the user where to put what."""

    def backbone(self, cfg: ConfigT) -> str:
        """The backbone ``cfg`` trains, in reported.yaml's words (``resnet50``, ``conv4``, ...):
        a reported row is compared only with runs of its own backbone."""
        return ""

    def validation(self, data: DataT, cfg: ConfigT) -> DataT:
        """The task's validation form of ``data``: the same type, whose test part is a fixed,
        seeded hold-out of TRAINING data and whose training part excludes it
        (:mod:`cirbench.data.holdout`); the test split is never read. ``cirbench run --split
        val`` and ``cirbench tune`` train and evaluate on it. Tasks without one refuse."""
        raise CirbenchError(
            f"task {self.name!r} declares no validation split; run it on the test split "
            "(leave out --split val)"
        )

    def check(self, data: DataT, cfg: ConfigT) -> None:
        """Refuse (CirbenchError) a config the data cannot serve, before anything trains: e.g.
        a 20-way episode on 10 test classes, or a gallery size without its protocol file."""

    @abstractmethod
    def build_model(self, data: DataT, cfg: ConfigT) -> EmbeddingNet:
        """The task's model recipe."""

    @abstractmethod
    def train_batches(self, data: DataT, cfg: ConfigT, generator: torch.Generator) -> Batches:
        """One epoch of (inputs, labels); all randomness drawn from ``generator``."""

    @abstractmethod
    def evaluate(self, ctx: EvalContext[ConfigT, DataT]) -> Evaluation:
        """The task's protocol on ``ctx.data`` under ``ctx.cfg`` (the run's config); model and
        method are in eval mode, gradients off."""


#: What the registry holds and the CLI / runner see: a task of some config and data type.
AnyTask = Task[Any, Any]

TASKS: Registry[type[AnyTask]] = Registry("task", key="name")


# --- what tables and reported.yaml need to know of a task, by name ------------------------------
# Records can name a task this install does not have (copied from elsewhere): then there is no
# declared metric order, every metric is a plain value where larger is better, and every profile
# counts as the reference one.


@dataclass(frozen=True)
class MetricInfo:
    """How tables treat one metric of one task."""

    lower_is_better: bool = False
    interval: bool = False  # a 95% half-width: shown, never ranked or tested


def metric_info(task: str, metric: str) -> MetricInfo:
    if task not in TASKS:
        return MetricInfo()
    cls = TASKS.get(task)
    return MetricInfo(metric in cls.lower_is_better, metric in cls.intervals)


def task_metrics(task: str) -> tuple[str, ...] | None:
    """The declared metrics of ``task`` in table order, or None for an unknown task."""
    return TASKS.get(task).metrics if task in TASKS else None


def default_methods(task: str) -> tuple[str, ...]:
    """The methods ``cirbench run TASK`` runs by default (tables list them first)."""
    return TASKS.get(task).default_methods if task in TASKS else ()


def reference_profile(task: str) -> str | None:
    """Profile whose records are compared with the papers: ``paper`` if the task has one, else
    its default; None for an unknown task (then any profile counts)."""
    if task not in TASKS:
        return None
    cls = TASKS.get(task)
    return "paper" if "paper" in cls.profiles else cls.default_profile


def reference_weights(task: str) -> str:
    """The weights.yaml name the task's reference profile starts from ("" for none): records
    trained from other weights are not comparable with the papers."""
    profile = reference_profile(task)
    if profile is None:
        return ""
    return str(getattr(TASKS.get(task).profiles[profile], "pretrained", None) or "")
