"""``digits``: scikit-learn's 1,797 real 8x8 handwritten digits, the zero-setup default task.

Data: ``sklearn.datasets.load_digits`` (UCI optical recognition of handwritten digits; 16 grey
levels, shipped inside the scikit-learn wheel, nothing to download). Split: a fixed stratified
70/30 split (``random_state=0``, 1,257 train / 540 test), the same for every seed and method.
Model: :class:`~cirbench.models.small.SmallCNN` with a 64-d embedding and a 10-way linear head.
Metrics: ``top1`` of the classifier (only for methods that train it), and retrieval on the test
split, each test image a query against the other 539 by cosine distance: ``recall@1`` and ``mAP``.
Validation (``--split val``, :meth:`Digits.validation`): a stratified 20% of the training
images. All values here are our own choices; no paper reports numbers on this task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from cirbench import distributed
from cirbench.data.fingerprint import data_fingerprint
from cirbench.data.holdout import stratified_holdout
from cirbench.engine import Evaluation, TrainConfig
from cirbench.eval.classification import top1_accuracy
from cirbench.eval.distances import cosine_distance
from cirbench.eval.retrieval import retrieval_metrics
from cirbench.methods.base import FEATURES, LOGITS
from cirbench.models import EmbeddingNet
from cirbench.models.small import SmallCNN
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData, val_fingerprint

SPLIT_SEED = 0
TEST_FRACTION = 0.3


def shuffled_batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """In-memory batches in a random order; the last incomplete batch is dropped. Under several
    processes each rank yields its share of every global batch of ``batch_size``."""
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y) - batch_size + 1, batch_size):
        idx = distributed.shard(order[start : start + batch_size])
        yield x[idx], y[idx]


@dataclass(frozen=True)
class DigitsData(TaskData):
    """Images (N, 1, 8, 8) in [0, 1] and labels of each split."""

    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]


@TASKS.register
class Digits(Task[TrainConfig, DigitsData]):
    name = "digits"
    dataset = "digits"
    provides = frozenset({FEATURES, LOGITS})
    default_methods = ("ce", "ls", "cir+ce", "triplet", "cir+triplet")
    metrics = ("top1", "recall@1", "mAP")
    profiles: ClassVar[dict[str, TrainConfig]] = {
        # Adam, constant lr; sized so 5 methods x 3 seeds run in minutes on 2 CPU cores.
        "default": TrainConfig(epochs=20, batch_size=128, lr=3e-3, weight_decay=5e-4),
        "smoke": TrainConfig(epochs=2, batch_size=128, lr=3e-3, weight_decay=5e-4),
    }
    default_profile = "default"
    # Circle loss: the paper's fine-grained retrieval values (Sun et al. 2020, Sec. 4.1).
    method_defaults: ClassVar[dict[str, dict[str, float]]] = {"circle": {"m": 0.4, "gamma": 80.0}}

    def load(self, data_root: Path) -> DigitsData:
        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
        labels = bunch.target.astype(np.int64)
        idx_train, idx_test = train_test_split(
            np.arange(len(labels)),
            test_size=TEST_FRACTION,
            stratify=labels,
            random_state=SPLIT_SEED,
        )
        return DigitsData(
            train=(torch.from_numpy(images[idx_train]), torch.from_numpy(labels[idx_train])),
            test=(torch.from_numpy(images[idx_test]), torch.from_numpy(labels[idx_test])),
            num_classes=10,
            fingerprint=data_fingerprint("sklearn-digits", [images, labels, idx_test]),
        )

    def validation(self, data: DigitsData, cfg: TrainConfig) -> DigitsData:
        """A stratified 20% of the training images (seed 0) as the test part; the test split
        is dropped."""
        x, y = data.train
        kept, held = (torch.from_numpy(i) for i in stratified_holdout(y.numpy()))
        return DigitsData(
            train=(x[kept], y[kept]),
            test=(x[held], y[held]),
            num_classes=data.num_classes,
            fingerprint=val_fingerprint(data.fingerprint),
        )

    def backbone(self, cfg: TrainConfig) -> str:
        return "small-cnn"

    def build_model(self, data: DigitsData, cfg: TrainConfig) -> EmbeddingNet:
        return SmallCNN(in_channels=1, num_classes=data.num_classes, embed_dim=64, width=32)

    def train_batches(
        self, data: DigitsData, cfg: TrainConfig, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = data.train
        return shuffled_batches(x, y, cfg.batch_size, generator)

    def evaluate(self, ctx: EvalContext[TrainConfig, DigitsData]) -> Evaluation:
        model, device = ctx.model, ctx.device
        x, y = (t.to(device) for t in ctx.data.test)
        features = model.embed(x).float()
        metrics: dict[str, float] = {}
        if LOGITS in ctx.method.requires and model.head is not None:
            metrics["top1"] = top1_accuracy(model.head(features), y)
        not_self = ~torch.eye(len(y), dtype=torch.bool, device=device)
        metrics.update(retrieval_metrics(cosine_distance(features, features), y, y, not_self))
        return Evaluation(metrics)
