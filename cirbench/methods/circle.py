"""``circle``: pairwise Circle loss.

Paper: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
CVPR 2020, arXiv:2002.10857, Eq. 6 in its pair-based form (every other sample of the batch is a
pair of the anchor).

Equation: s_ij = cos(f_i, f_j) on L2-normalised features. For anchor i, positives P_i = {j != i,
y_j = y_i}, negatives N_i = {k, y_k != y_i}:
    alpha_p = relu(1 + m - s_p), alpha_n = relu(s_n + m)   (both detached: no gradient)
    Delta_p = 1 - m, Delta_n = m
    L_i = softplus( logsumexp_{k in N_i} gamma * alpha_n * (s_n - Delta_n)
                  + logsumexp_{j in P_i} -gamma * alpha_p * (s_p - Delta_p) )
    L = mean of L_i over anchors with P_i and N_i non-empty; 0 when there is none.
Shapes: features f (N, D), labels y (N,). Computed in float32 (float64 inputs stay float64).
Defaults: ``m = 0.25``, ``gamma = 128`` are the paper's person re-ID values (Sec. 4.1; face
recognition uses m = 0.25, gamma = 256; fine-grained retrieval m = 0.4, gamma = 80). Tasks
override them through their method defaults. ``weight = 1.0`` (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from cirbench.eval.distances import working_precision
from cirbench.methods.base import FEATURES, METHODS, Loss, LossConfig
from cirbench.methods.triplet import label_masks, mean_over_valid


@dataclass(frozen=True)
class CircleConfig(LossConfig):
    m: float = 0.25
    gamma: float = 128.0

    def validate(self) -> None:
        if not self.gamma > 0.0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if not 0.0 <= self.m < 1.0:
            raise ValueError(f"m must be in [0, 1), got {self.m}")


def masked_logsumexp(x: Tensor, mask: Tensor) -> Tensor:
    """Row-wise logsumexp over ``mask`` entries of ``x`` (N, N) -> (N,).

    Rows without entries give log(N) of zeros instead of -inf, so their gradient stays finite;
    callers drop those rows.
    """
    filled = x.masked_fill(~mask, float("-inf"))
    filled = filled.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)
    return filled.logsumexp(dim=1)


@METHODS.register
class CircleLoss(Loss):
    key = "circle"
    Config: ClassVar[type[CircleConfig]] = CircleConfig
    requires = frozenset({FEATURES})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        x = F.normalize(working_precision(features), dim=1)
        sim = x @ x.T
        pos, neg = label_masks(labels)
        m, gamma = self.cfg.m, self.cfg.gamma
        alpha_p = (1.0 + m - sim.detach()).clamp(min=0.0)
        alpha_n = (sim.detach() + m).clamp(min=0.0)
        logit_p = -gamma * alpha_p * (sim - (1.0 - m))
        logit_n = gamma * alpha_n * (sim - m)
        lse = masked_logsumexp(logit_p, pos) + masked_logsumexp(logit_n, neg)
        return mean_over_valid(F.softplus(lse), pos.any(dim=1) & neg.any(dim=1))
