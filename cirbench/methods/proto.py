"""``proto``: the prototypical-network episodic loss, on a P x K batch.

Paper: Snell, Swersky, Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017,
arXiv:1703.05175, Sec. 2.2 (Algorithm 1).

Equation: the batch's P classes are the episode's ways. Within each class, the first
``n_support`` samples in batch order are its support set S_c and the rest are queries, so
    c_k = (1 / |S_k|) * sum_{x in S_k} f(x)                       (prototype, eq. 1)
    logits(q)_k = -||f(q) - c_k||^2                                (squared Euclidean, eq. 2)
    L = mean over queries q of cross_entropy(logits(q), class of q)
over the classes of the batch. The PKSampler shuffles each class's samples, so the split is
random. A class whose samples are all support (one sample) still gives a prototype; a batch
without any query gives a zero loss (still attached to the graph).

Shapes: features (N, D), labels (N,) int; computed in float32 (float64 stays float64).
Defaults: ``n_support = None`` means half of each class's samples, rounded down, at least 1 and
at most count - 1 (ours: Snell et al. train with fixed episode sizes, e.g. 5 support and 15
queries, which a P x K batch with K = 4 cannot hold); a value larger than a class's count - 1
is clamped to count - 1. ``weight = 1.0`` (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.eval.distances import working_precision
from cirbench.methods.base import FEATURES, METHODS, Loss, LossConfig


@dataclass(frozen=True)
class ProtoConfig(LossConfig):
    n_support: int | None = None

    def validate(self) -> None:
        if self.n_support is not None and self.n_support < 1:
            raise ValueError(f"n_support must be >= 1 (or None for K/2), got {self.n_support}")


def within_class_rank(inverse: Tensor, n_classes: int) -> Tensor:
    """Position of each sample among the samples of its class, in batch order (N,)."""
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=n_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(len(inverse), device=inverse.device) - starts[inverse[order]]
    return rank


def support_sizes(counts: Tensor, n_support: int | None) -> Tensor:
    """Support samples per class: n_support (or count // 2), within [1, max(1, count - 1)]."""
    wanted = counts // 2 if n_support is None else torch.full_like(counts, n_support)
    return torch.minimum(wanted.clamp(min=1), (counts - 1).clamp(min=1))


@METHODS.register
class PrototypicalLoss(Loss):
    key = "proto"
    Config: ClassVar[type[ProtoConfig]] = ProtoConfig
    requires = frozenset({FEATURES})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        feats = working_precision(features)
        classes, inverse = torch.unique(labels, return_inverse=True)
        counts = torch.bincount(inverse, minlength=len(classes))
        n_sup = support_sizes(counts, self.cfg.n_support)
        support = within_class_rank(inverse, len(classes)) < n_sup[inverse]
        protos = torch.zeros(len(classes), feats.shape[1], dtype=feats.dtype, device=feats.device)
        protos = protos.index_add(0, inverse[support], feats[support]) / n_sup.unsqueeze(1)
        query = ~support
        scores = -(feats[query].unsqueeze(1) - protos.unsqueeze(0)).pow(2).sum(-1)
        if scores.shape[0] == 0:
            return feats.sum() * 0.0
        return F.cross_entropy(scores, inverse[query])
