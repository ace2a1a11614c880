"""``center``: center loss with learned class centers.

Paper: Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition",
ECCV 2016, Eq. 2 (L_C = 1/2 sum_i ||x_i - c_{y_i}||^2).

Equation, in the convention of the re-ID strong baseline (Luo et al., "Bag of Tricks and A Strong
Baseline for Deep Person Re-identification", 2019, arXiv:1903.07071; reid-strong-baseline
``layers/center_loss.py``): no 1/2, a per-sample clamp, a batch mean
    L = 1/N sum_i clamp(||f_i - c_{y_i}||^2, 1e-12, 1e12).
Centers c (C, D) are a parameter initialised with ``torch.randn`` (as there) and updated by their
own SGD optimizer (:meth:`CenterLoss.auxiliary_optimizers`, no momentum, no weight decay). The
total loss carries ``weight * L``; a gradient hook multiplies the centers' gradient by
1 / weight, so the centers move by ``lr * dL/dc`` whatever the weight (the reference does
``param.grad *= 1 / CENTER_LOSS_WEIGHT`` before ``optimizer_center.step()``). The engine must
leave the centers out of its main optimizer.
Shapes: features f (N, D), labels y (N,) in [0, C), centers (C, D) with C = ``num_classes`` and
D = ``feature_dim`` of the task.
Defaults: ``weight = 5e-4`` (``SOLVER.CENTER_LOSS_WEIGHT``) and ``lr = 0.5``
(``SOLVER.CENTER_LR``), both from Luo et al. 2019 / reid-strong-baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from cirbench.methods.base import FEATURES, METHODS, Loss, LossConfig, MethodContext


@dataclass(frozen=True)
class CenterConfig(LossConfig):
    weight: float = 5e-4
    lr: float = 0.5

    def validate(self) -> None:
        if not self.weight > 0.0:
            raise ValueError(
                f"weight must be > 0 (the center gradient is divided by it), got {self.weight}"
            )
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@METHODS.register
class CenterLoss(Loss):
    key = "center"
    Config: ClassVar[type[CenterConfig]] = CenterConfig
    requires = frozenset({FEATURES})

    def __init__(self, cfg: CenterConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.centers = nn.Parameter(torch.randn(ctx.num_classes, ctx.feature_dim))
        self._optimizer = torch.optim.SGD([self.centers], lr=cfg.lr)
        self._inverse_weight = 1.0 / cfg.weight

    def auxiliary_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self._optimizer]

    def _unweight(self, grad: Tensor) -> Tensor:
        return grad.mul(self._inverse_weight)

    def _hooked_centers(self) -> Tensor:
        """The centers, through a view whose gradient hook undoes the loss weight.

        The hook sits on a per-call view rather than on the parameter, so it survives
        ``copy.deepcopy`` and pickling of the module (parameter hooks do not).
        """
        centers = self.centers
        if not (torch.is_grad_enabled() and centers.requires_grad):
            return centers
        view = centers.view_as(centers)
        view.register_hook(self._unweight)  # type: ignore[no-untyped-call]
        return view

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        centers = self._hooked_centers()[labels]
        diff = features.float() - centers.float()
        return diff.pow(2).sum(dim=1).clamp(min=1e-12, max=1e12).mean()
