"""``triplet``: batch-hard triplet loss.

Paper: Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
2017, arXiv:1703.07737, Sec. 2 ("Batch Hard").

Equation: for each anchor i with at least one positive and one negative in the batch,
    d_ap(i) = max_{j != i, y_j = y_i} D(f_i, f_j)      (hardest positive)
    d_an(i) = min_{k, y_k != y_i} D(f_i, f_k)          (hardest negative)
    l_i = max(0, d_ap(i) - d_an(i) + margin)           (hinge)
    l_i = log(1 + exp(d_ap(i) - d_an(i)))              (soft margin; ``margin`` is not used)
    L = mean of l_i over those anchors; 0 when there is none.
D is the Euclidean distance sqrt(max(||f_i||^2 + ||f_j||^2 - 2 f_i.f_j, 1e-12)) (the clamp keeps
gradients finite for identical features, as in the re-ID strong baseline) or the cosine distance
1 - cos(f_i, f_j).
Shapes: features f (N, D), labels y (N,). Computed in float32 (float64 inputs stay float64).
Defaults: ``margin = 0.3`` (Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", 2019, arXiv:1903.07071; ``SOLVER.MARGIN`` in reid-strong-baseline);
``soft_margin = False`` and ``distance = "euclidean"`` (that baseline's choices; Hermans et al.
use the soft margin); ``weight = 1.0`` (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.config import FloatRange, SearchSpace
from cirbench.eval.distances import pairwise_distances, working_precision
from cirbench.methods.base import FEATURES, METHODS, Loss, LossConfig


@dataclass(frozen=True)
class TripletConfig(LossConfig):
    margin: float = 0.3
    #: Tuning range (ours): Hermans et al. 2017 and Luo et al. 2019 use 0.2-0.5; Musgrave et
    #: al. 2020 (arXiv:2003.08505) search margins of this order.
    search_space: ClassVar[SearchSpace] = {"margin": FloatRange(0.05, 1.0)}
    soft_margin: bool = False
    distance: Literal["euclidean", "cosine"] = "euclidean"

    def validate(self) -> None:
        if self.margin < 0.0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(N,) -> boolean (N, N) masks of positives (same label, not self) and negatives."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def mean_over_valid(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_anchor`` over ``valid`` rows; a zero still attached to the graph if none.

    Written without a host sync: invalid rows are zeroed and the count is clamped to 1.
    """
    kept = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return kept.sum() / valid.sum().clamp(min=1)


@METHODS.register
class TripletLoss(Loss):
    key = "triplet"
    Config: ClassVar[type[TripletConfig]] = TripletConfig
    requires = frozenset({FEATURES})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        dist = pairwise_distances(working_precision(features), self.cfg.distance)
        pos, neg = label_masks(labels)
        d_ap = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
        d_an = dist.masked_fill(~neg, float("inf")).amin(dim=1)
        if self.cfg.soft_margin:
            per_anchor = F.softplus(d_ap - d_an)
        else:
            per_anchor = F.relu(d_ap - d_an + self.cfg.margin)
        return mean_over_valid(per_anchor, pos.any(dim=1) & neg.any(dim=1))
