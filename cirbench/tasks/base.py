"""What a task is: data in its canonical form, a model recipe, training profiles, an evaluation
protocol, and per-task method defaults.

A task class is registered under the word users type, its ``name`` (``@TASKS.register``). The CLI
and tests use only this interface, so adding a task touches one new file and its test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from cirbench.engine import Batches, Evaluation, TrainConfig
from cirbench.errors import CirbenchError, did_you_mean
from cirbench.methods.base import Method
from cirbench.models import EmbeddingNet
from cirbench.registry import Registry


@dataclass(frozen=True)
class TaskData:
    """Loaded data of a task. ``train`` and ``test`` are whatever the task's own methods use."""

    train: Any
    test: Any
    num_classes: int
    fingerprint: str  # identifies the exact data used, for result records


@dataclass(frozen=True)
class EvalContext:
    """What a task's evaluation sees: the trained model and its method (in eval mode), the
    task's data, the run's config and the device."""

    model: EmbeddingNet
    method: Method
    data: TaskData
    cfg: TrainConfig
    device: torch.device


class Task(ABC):
    name: ClassVar[str]
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
    #: the vocabulary of reported.yaml entries for the task. ``*_ci95`` names are 95% interval
    #: half-widths (no "better", no test).
    metrics: ClassVar[tuple[str, ...]] = ()
    #: The metrics where smaller is better (e.g. ``error``); all others: larger is better.
    lower_is_better: ClassVar[frozenset[str]] = frozenset()

    def profile(self, name: str | None) -> TrainConfig:
        name = name or self.default_profile
        if name not in self.profiles:
            raise CirbenchError(
                f"task {self.name!r} has no profile {name!r}.{did_you_mean(name, self.profiles)} "
                f"Its profiles: {', '.join(self.profiles)}."
            )
        return self.profiles[name]

    @abstractmethod
    def load(self, data_root: Path) -> TaskData:
        """Read the dataset; raise CirbenchError telling the user where to put what."""

    @abstractmethod
    def build_model(self, data: TaskData, cfg: TrainConfig) -> EmbeddingNet:
        """The task's model recipe."""

    @abstractmethod
    def train_batches(
        self, data: TaskData, cfg: TrainConfig, generator: torch.Generator
    ) -> Batches:
        """One epoch of (inputs, labels); all randomness drawn from ``generator``."""

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> Evaluation:
        """The task's protocol on ``ctx.data`` under ``ctx.cfg`` (the run's config); model and
        method are in eval mode, gradients off."""


TASKS: Registry[type[Task]] = Registry("task", key="name")
