"""``ce``: softmax cross-entropy on the classifier logits.

Equation: L = -1/N sum_i log softmax(z_i)[y_i], logits z (N, C), labels y (N,).
The only field is ``weight`` (1.0, our default).
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from cirbench.methods.base import LOGITS, METHODS, Loss, LossConfig


@METHODS.register
class CrossEntropy(Loss):
    key = "ce"
    Config: ClassVar[type[LossConfig]] = LossConfig
    requires = frozenset({LOGITS})

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        assert logits is not None
        return F.cross_entropy(logits.float(), labels)
