"""``circle-cls``: Circle loss with class-level labels (a cosine classifier with Circle weights).

Paper: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
CVPR 2020, arXiv:2002.10857, Eq. 1 / 6 with class-level labels: the "pairs" of a sample are its
similarities to the class proxies W_j (the weight rows of a classifier).

Equation: s_j = cos(W_j, f) for every class j; positive s_p = s_y, negatives s_n = s_j, j != y;
    alpha_p = [1 + m - s_p]_+,  alpha_n = [s_n + m]_+          (both detached, as in the paper)
    z_y = gamma * alpha_p * (s_p - (1 - m)),  z_j = gamma * alpha_n * (s_j - m)  (j != y)
    L = cross_entropy(z, y) = log(1 + sum_{j != y} exp(z_j - z_y)), averaged over the batch.
Shapes: features f (N, D), labels y (N,) in [0, C); weights W (C, D); logits z (N, C).

Design (ours): the component owns its class weights W (``num_classes x feature_dim``) and the
optimizer that trains them (:meth:`CircleClassLoss.auxiliary_optimizers`), like ``center`` owns
its centers. So it needs only the task's training FEATURES: it works on every task that provides
features, leaves the task's own classifier head untouched (``ls``/``ce`` keep their linear
logits in the same run), and composes with ``cir`` (the perturbed features are scored). The
alternative - a task head producing cosine logits - would make the head depend on the method,
which the engine's contract (the model is built before the method) does not allow. Costs: the
engine's learning-rate schedule acts on its main optimizer only, so W is trained at a constant
``lr``; on a BNNeck model W scores the pre-BN feature (the feature the engine hands to losses),
whereas fast-reid's ``CircleSoftmax`` head scores the post-BN one.
W is initialised like fast-reid's ``CircleSoftmax`` (``kaiming_uniform_(a=sqrt(5))``).
Defaults: ``m = 0.25``, ``gamma = 128`` (Sun et al. 2020, Sec. 4.1, the values this package
uses for pairwise ``circle`` on re-ID); ``lr = 3.5e-4`` and ``weight_decay = 5e-4``, Adam (ours:
the strong baseline's main optimizer settings, Luo et al. 2019); ``weight = 1.0`` (ours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cirbench.eval.distances import working_precision
from cirbench.methods.base import FEATURES, METHODS, Loss, LossConfig, MethodContext


@dataclass(frozen=True)
class CircleClassConfig(LossConfig):
    m: float = 0.25
    gamma: float = 128.0
    lr: float = 3.5e-4
    weight_decay: float = 5e-4

    def validate(self) -> None:
        if not self.gamma > 0.0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if not 0.0 <= self.m < 1.0:
            raise ValueError(f"m must be in [0, 1), got {self.m}")
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def circle_class_logits(cosine: Tensor, labels: Tensor, m: float, gamma: float) -> Tensor:
    """Circle-weighted logits (N, C) from cosine similarities (N, C) to the class proxies."""
    positive = F.one_hot(labels, cosine.shape[1]).bool()
    s = cosine.detach()
    alpha_p = (1.0 + m - s).clamp(min=0.0)
    alpha_n = (s + m).clamp(min=0.0)
    logit_p = gamma * alpha_p * (cosine - (1.0 - m))
    logit_n = gamma * alpha_n * (cosine - m)
    return torch.where(positive, logit_p, logit_n)


@METHODS.register
class CircleClassLoss(Loss):
    key = "circle-cls"
    Config: ClassVar[type[CircleClassConfig]] = CircleClassConfig
    requires = frozenset({FEATURES})

    def __init__(self, cfg: CircleClassConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.proxies = nn.Parameter(torch.empty(ctx.num_classes, ctx.feature_dim))
        nn.init.kaiming_uniform_(self.proxies, a=math.sqrt(5))
        self._optimizer = torch.optim.Adam([self.proxies], lr=cfg.lr, weight_decay=cfg.weight_decay)

    def auxiliary_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self._optimizer]

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        x = F.normalize(working_precision(features), dim=1)
        w = F.normalize(self.proxies.to(x.dtype), dim=1)
        z = circle_class_logits(x @ w.T, labels, self.cfg.m, self.cfg.gamma)
        return F.cross_entropy(z, labels)
