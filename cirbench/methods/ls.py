"""``ls``: cross-entropy with label smoothing.

Paper: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016,
arXiv:1512.00567, Sec. 7; studied by Muller, Kornblith, Hinton, "When Does Label Smoothing
Help?", NeurIPS 2019, arXiv:1906.02629.

Equation: target q = (1 - eps) * onehot(y) + eps / C; L = -1/N sum_i sum_c q_ic log softmax(z_i)_c.
Shapes: logits z (N, C), labels y (N,).
Defaults: ``eps = 0.1`` (Szegedy et al. 2016; also the re-ID strong baseline, Luo et al. 2019);
``weight = 1.0`` (ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from cirbench.config import FloatRange, SearchSpace
from cirbench.methods.base import LOGITS, METHODS, Loss, LossConfig


@dataclass(frozen=True)
class LabelSmoothingConfig(LossConfig):
    eps: float = 0.1
    #: Tuning range (ours): Muller et al. 2019 study eps up to 0.3 and beyond is rarely used.
    search_space: ClassVar[SearchSpace] = {"eps": FloatRange(0.0, 0.3)}

    def validate(self) -> None:
        if not 0.0 <= self.eps < 1.0:
            raise ValueError(f"eps must be in [0, 1), got {self.eps}")


@METHODS.register
class LabelSmoothing(Loss):
    key = "ls"
    Config: ClassVar[type[LabelSmoothingConfig]] = LabelSmoothingConfig
    requires = frozenset({LOGITS})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        assert logits is not None
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.eps)
