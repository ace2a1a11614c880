"""CIFAR classification: ``cifar10``, ``cifar100`` (official python release) and ``cifar10-subset``
(a real 5,085 / 1,017-image cut of CIFAR-10 for CPU runs and CI).

Data: the canonical python release read by :mod:`cirbench.data.cifar` after the catalogue checked
every file and md5 (:func:`~cirbench.data.catalog.require_dataset`; ``cifar10-subset`` has its own
entry and md5s). Split: the official train / test files, as in the papers compared; ``--split val``
(:meth:`CifarTask.validation`) trains on 80% of the training images and evaluates on a
stratified 20% of them (seed 0, ours), never on the test file.
Inputs stay uint8 until the model's :class:`InputNorm`, which standardises
with the per-channel mean and std of the task's training images (computed at load).
Augmentation (He et al. 2016, Sec. 4.2): zero-pad 4, random 32 x 32 crop, random horizontal flip,
in batch (:func:`~cirbench.data.cifar.random_crop_flip`); none at test time.
Metrics: ``top1`` (fraction of test images whose arg-max logit is the label) and ``error``
(1 - top1); ``details.per_class_top1`` keeps the accuracy of every class. CIFAR-100 is scored on
its 100 fine labels.

Profiles (``paper``): SGD, momentum 0.9, weight decay 5e-4, batch 128, lr 0.1 with a cosine
schedule to 0 over 200 epochs: the issue's recipe, the common CIFAR recipe of open
re-implementations. Mixed precision and channels_last on CUDA come from the engine. Backbones:

- ``cifar10``: the CIFAR ResNet-18 (CIFAR stem, 11.2 M parameters), the common choice for
  CIFAR-10 baselines. The label-smoothing CIFAR-10 numbers of Muller et al. 2019 (Table 1) use an
  AlexNet-style network instead, so our ``cifar10`` numbers are not directly comparable with
  those rows (``--set train.arch=resnet56`` trains the ResNet-56 instead).
- ``cifar100``: ResNet-56 (He et al. 2016), the network of Muller et al.'s CIFAR-100 rows
  (CE 72.1 / LS 72.7), so that the reported numbers are the reference.

``smoke`` (``cifar10``, ``cifar100``): the small :class:`~cirbench.models.cifar_cnn.CifarCNN`, one
epoch on the first 2,560 training images, the whole test set: checks the pipeline end to end on a
CPU; its numbers mean nothing.

``cifar10-subset`` (all our choices, sized so that 3 methods x 3 seeds run on a 2-core CPU; the
committed records' ``wall_time_s`` give the time per run): ``CifarCNN`` (width 32), SGD momentum
0.9, lr 0.05, weight decay 5e-4, batch 64, cosine over 5 epochs, no augmentation: in so short a
schedule the augmentation cost more accuracy than it saved from over-fitting (the measurements
are in docs/design-measurements.md; ``--set train.augment=true`` turns it on).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor

from cirbench.data.catalog import require_dataset
from cirbench.data.cifar import (
    CifarSplit,
    Split,
    channel_stats,
    read_cifar10,
    read_cifar100,
    shuffled_batches,
)
from cirbench.data.fingerprint import data_fingerprint
from cirbench.data.holdout import stratified_holdout
from cirbench.engine import Evaluation, TrainConfig
from cirbench.methods.base import LOGITS
from cirbench.models import EmbeddingNet
from cirbench.models.cifar_cnn import CifarCNN
from cirbench.models.cifar_resnet import cifar_resnet
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData, val_fingerprint

EVAL_BATCH = 500


@dataclass(frozen=True)
class CifarConfig(TrainConfig):
    """The training schedule plus the CIFAR model and input pipeline.

    ``arch``: ``resnet18`` / ``resnet56`` (:mod:`cirbench.models.cifar_resnet`) or ``cnn``
    (:class:`CifarCNN` with ``width``). ``augment``: pad ``pad`` + random crop + horizontal flip.
    ``train_limit``: train on the first N training images only (0 = all; for smoke runs).
    """

    arch: Literal["resnet18", "resnet56", "cnn"] = "resnet18"
    width: int = 32
    augment: bool = True
    pad: int = 4
    train_limit: int = 0

    def validate(self) -> None:
        super().validate()
        if self.width < 1 or self.pad < 0 or self.train_limit < 0:
            raise ValueError("width must be >= 1, pad and train_limit >= 0")


@dataclass(frozen=True)
class CifarData(TaskData):
    """Both splits, and the training set's per-channel mean and std (0..1 scale) for the model."""

    train: CifarSplit
    test: CifarSplit
    mean: tuple[float, ...]
    std: tuple[float, ...]


def paper_config(arch: Literal["resnet18", "resnet56"]) -> CifarConfig:
    return CifarConfig(
        epochs=200,
        batch_size=128,
        lr=0.1,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        arch=arch,
    )


SMOKE = CifarConfig(
    epochs=1,
    batch_size=128,
    lr=0.05,
    optimizer="sgd",
    weight_decay=5e-4,
    schedule="cosine",
    arch="cnn",
    train_limit=2560,
)


def subset_config(epochs: int) -> CifarConfig:
    return CifarConfig(
        epochs=epochs,
        batch_size=64,
        lr=0.05,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        arch="cnn",
        augment=False,
    )


def subset(split: CifarSplit, index: Tensor) -> CifarSplit:
    """The images of ``split`` at ``index``, with their labels (and coarse labels)."""
    coarse = split.coarse_labels[index] if split.coarse_labels is not None else None
    images, labels = split.images[index], split.labels[index]
    return replace(split, images=images, labels=labels, coarse_labels=coarse)


class CifarTask(Task[CifarConfig, CifarData]):
    """Shared by the three CIFAR tasks; subclasses name the dataset, reader and profiles."""

    config_type = CifarConfig
    provides = frozenset({LOGITS})
    default_methods = ("ce", "ls", "cir+ce", "cir+ls")
    metrics = ("top1", "error")
    lower_is_better = frozenset({"error"})

    def read(self, folder: Path, split: Split) -> CifarSplit:
        """One split of the task's dataset folder (CIFAR-10 layout unless overridden)."""
        return read_cifar10(folder, split)

    def load(self, data_root: Path) -> CifarData:
        folder = require_dataset(self.dataset, data_root)
        train, test = self.read(folder, "train"), self.read(folder, "test")
        mean, std = channel_stats(train.images)
        return CifarData(
            train=train,
            test=test,
            num_classes=len(train.names),
            fingerprint=data_fingerprint(
                self.dataset,
                [
                    train.images.numpy(),
                    train.labels.numpy(),
                    test.images.numpy(),
                    test.labels.numpy(),
                ],
            ),
            mean=mean,
            std=std,
        )

    def validation(self, data: CifarData, cfg: CifarConfig) -> CifarData:
        """A stratified 20% of the training images (seed 0) as the test part; the channel
        statistics are recomputed on the training images that remain."""
        kept, held = (torch.from_numpy(i) for i in stratified_holdout(data.train.labels.numpy()))
        train, test = subset(data.train, kept), subset(data.train, held)
        mean, std = channel_stats(train.images)
        return CifarData(
            train=train,
            test=test,
            num_classes=data.num_classes,
            fingerprint=val_fingerprint(data.fingerprint),
            mean=mean,
            std=std,
        )

    def backbone(self, cfg: CifarConfig) -> str:
        return cfg.arch

    def build_model(self, data: CifarData, cfg: CifarConfig) -> EmbeddingNet:
        if cfg.arch == "cnn":
            return CifarCNN(data.num_classes, data.mean, data.std, cfg.width)
        return cifar_resnet(cfg.arch, data.num_classes, data.mean, data.std)

    def train_batches(
        self, data: CifarData, cfg: CifarConfig, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = data.train.images, data.train.labels
        if cfg.train_limit:
            images, labels = images[: cfg.train_limit], labels[: cfg.train_limit]
        pad = cfg.pad if cfg.augment else None
        return shuffled_batches(images, labels, cfg.batch_size, generator, pad)

    def evaluate(self, ctx: EvalContext[CifarConfig, CifarData]) -> Evaluation:
        model, data, device = ctx.model, ctx.data, ctx.device
        split = data.test
        assert model.head is not None
        predictions = [
            model.head(model.embed(split.images[i : i + EVAL_BATCH].to(device))).argmax(1).cpu()
            for i in range(0, len(split), EVAL_BATCH)
        ]
        correct = (torch.cat(predictions) == split.labels).float()
        top1 = float(correct.mean())
        per_class = torch.zeros(data.num_classes).index_add_(0, split.labels, correct)
        per_class /= torch.bincount(split.labels, minlength=data.num_classes).clamp(min=1)
        details = {"per_class_top1": dict(zip(split.names, per_class.tolist(), strict=True))}
        return Evaluation({"top1": top1, "error": 1.0 - top1}, details)


@TASKS.register
class Cifar10(CifarTask):
    name = "cifar10"
    dataset = "cifar10"
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        "paper": paper_config("resnet18"),
        "smoke": SMOKE,
    }
    default_profile = "paper"


@TASKS.register
class Cifar100(CifarTask):
    name = "cifar100"
    dataset = "cifar100"
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        "paper": paper_config("resnet56"),
        "smoke": SMOKE,
    }
    default_profile = "paper"

    def read(self, folder: Path, split: Split) -> CifarSplit:
        return read_cifar100(folder, split)


@TASKS.register
class Cifar10Subset(CifarTask):
    name = "cifar10-subset"
    dataset = "cifar10-subset"
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        "default": subset_config(epochs=5),
        "smoke": subset_config(epochs=2),
    }
    default_profile = "default"
