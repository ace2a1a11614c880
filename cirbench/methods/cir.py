"""``cir``: Class Interference Regularization as a training-time feature perturbation.

Paper: Munjal, Amin, Galasso, "Class Interference Regularization", BMVC 2020, arXiv:2009.02396.

What follows the paper's abstract: CIR moves output features, at random, toward the average
embedding of the negative classes; it acts in training only and is combined with an ordinary
loss (triplet, cross-entropy) that then scores the moved features. The paper's exact update
rule, probabilities and strengths were not available to us, so every knob is a config field and
**all default values below are our own choices**, not the paper's.

Equation (ours, the natural reading of the abstract): for a sample with feature f (D,) and label
y, with probability ``p``

    f' = f + lam * (t_y - f) = (1 - lam) * f + lam * t_y,

where ``t_y`` is a negative-class target and ``lam`` is ``strength`` (``strength_mode="fixed"``)
or drawn from U(0, ``strength``) per sample (``"uniform"``). Otherwise f' = f. Targets:

- ``target="mean"``: the mean of the centroids of all negative classes (each class counts once),
  the abstract's "average embedding of the negative classes";
- ``target="random"``: the centroid of one negative class drawn uniformly.

Centroids are the per-class mean features of the current batch (``centroids="batch"``: only
classes present in the batch are negatives) or a running memory (``"ema"``) of shape (C, D),
updated once per training batch *before* targets are taken: c_k <- m * c_k + (1 - m) * mean_k for
every class k in the batch, and c_k <- mean_k the first time k is seen. Targets are detached, so
the gradient reaches the backbone through (1 - lam) * f only. ``normalize_input`` L2-normalises f
(and so the centroids) before the move, ``normalize_output`` L2-normalises f' after it.
A sample with no negative class available is left unchanged. The normalisations belong to the
perturbation: they act in training only and not at all when p = 0 (then CIR is the identity).
Centroids and the memory are kept in float32 whatever the feature dtype (AMP-safe).

Shapes: features (N, D) float, labels (N,) int64 in [0, C). Output (N, D). A sample whose label
is outside [0, C) (an unlabeled person in person search, marked -1) passes through unchanged
and neither is a negative class nor moves a centroid (like ``ignore_index`` of cross-entropy).
Defaults (all ours): p = 0.5, strength = 0.5 with ``"uniform"`` (mean move 0.25 of the way),
target = "mean", centroids = "batch", momentum = 0.9, no normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.config import Choice, FloatRange, SearchSpace
from cirbench.methods.base import METHODS, MethodContext, Perturbation


@dataclass(frozen=True)
class CIRConfig:
    p: float = 0.5
    strength: float = 0.5
    strength_mode: Literal["uniform", "fixed"] = "uniform"
    target: Literal["mean", "random"] = "mean"
    centroids: Literal["batch", "ema"] = "batch"
    momentum: float = 0.9
    normalize_input: bool = False
    normalize_output: bool = False
    #: Tuning ranges (ours): every value the rule accepts for p and strength, both targets and
    #: both centroid kinds.
    search_space: ClassVar[SearchSpace] = {
        "p": FloatRange(0.0, 1.0),
        "strength": FloatRange(0.0, 1.0),
        "target": Choice(("mean", "random")),
        "centroids": Choice(("batch", "ema")),
    }

    def validate(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


@METHODS.register
class ClassInterference(Perturbation):
    key = "cir"
    Config: ClassVar[type[CIRConfig]] = CIRConfig

    memory: Tensor
    seen: Tensor

    def __init__(self, cfg: CIRConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.register_buffer("memory", torch.zeros(ctx.num_classes, ctx.feature_dim))
        self.register_buffer("seen", torch.zeros(ctx.num_classes, dtype=torch.bool))

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if not self.training or self.cfg.p == 0.0:
            return features
        num_classes = self.ctx.num_classes
        known = (labels >= 0) & (labels < num_classes)
        # No host branch on the labels: unknown samples get the sentinel class C (never a
        # negative, never in the memory) and are put back unchanged by the final ``where``.
        safe = torch.where(known, labels, num_classes)
        return torch.where(known.unsqueeze(1), self._perturb(features, safe), features)

    def _perturb(self, features: Tensor, labels: Tensor) -> Tensor:
        if self.cfg.normalize_input:
            features = F.normalize(features, dim=1)
        with torch.no_grad():
            centroids, valid, index = self._centroids(features.detach().float(), labels)
            target, has_target = self._targets(centroids, valid, index)
            lam = self._strengths(features.shape[0], features.device)
            lam = lam * has_target
        moved = features + lam.unsqueeze(1).to(features.dtype) * (
            target.to(features.dtype) - features
        )
        if self.cfg.normalize_output:
            moved = F.normalize(moved, dim=1)
        return moved

    def _centroids(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Centroid rows (K, D), which rows are usable (K,), and each sample's own row (N,).

        ``labels`` equal to C mark unknown samples. ``"batch"``: one row per distinct label
        (``torch.unique``, which on CUDA waits for the device to size its output: the one sync
        left in CIR); the sentinel's row is not usable. ``"ema"``: the (C, D) memory, updated
        with fixed shapes and no sync."""
        num_classes = self.ctx.num_classes
        if self.cfg.centroids == "batch":
            classes, index = torch.unique(labels, return_inverse=True)
            sums = torch.zeros(len(classes), features.shape[1], device=features.device)
            sums.index_add_(0, index, features)
            counts = torch.bincount(index, minlength=len(classes)).unsqueeze(1)
            return sums / counts, classes < num_classes, index
        self._update_memory(features, labels)
        return self.memory, self.seen, labels.clamp(max=num_classes - 1)

    def _update_memory(self, features: Tensor, labels: Tensor) -> None:
        """c_k <- m c_k + (1 - m) mean_k for every class k in the batch (mean_k the first time),
        over all C rows at once: the per-row sums add the samples in batch order, so the rows
        get the same bits as a per-class update would."""
        num_classes, dim = self.memory.shape
        sums = torch.zeros(num_classes + 1, dim, device=features.device)
        sums.index_add_(0, labels, features)
        counts = torch.zeros(num_classes + 1, device=features.device)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
        present = counts[:num_classes] > 0
        means = sums[:num_classes] / counts[:num_classes].clamp_min(1.0).unsqueeze(1)
        m = self.cfg.momentum
        old = self.memory.float()
        first = (~self.seen).unsqueeze(1)
        updated = torch.where(first, means, m * old + (1.0 - m) * means)
        self.memory.copy_(torch.where(present.unsqueeze(1), updated, old))
        self.seen |= present

    def _targets(self, centroids: Tensor, valid: Tensor, own: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample target (N, D) and whether the sample has any negative class (N,)."""
        negatives = valid.unsqueeze(0).expand(len(own), -1).clone()
        negatives[torch.arange(len(own), device=own.device), own] = False
        has_target = negatives.any(dim=1)
        if self.cfg.target == "mean":
            weights = negatives.float()
            target = weights @ centroids / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
        else:
            weights = negatives.float() + (~has_target).float().unsqueeze(1)
            target = centroids[torch.multinomial(weights, 1).squeeze(1)]
        return target, has_target.float()

    def _strengths(self, n: int, device: torch.device) -> Tensor:
        cfg: CIRConfig = self.cfg
        apply = (torch.rand(n, device=device) < cfg.p).float()
        if cfg.strength_mode == "fixed":
            return apply * cfg.strength
        return apply * torch.rand(n, device=device) * cfg.strength
