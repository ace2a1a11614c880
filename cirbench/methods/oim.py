"""``oim``: Online Instance Matching loss for person search.

Paper: Xiao, Li, Wang, Lin, Wang, "Joint Detection and Identification Feature Learning for
Person Search", CVPR 2017, arXiv:1604.01850 (Sec. 3.2).

Equation: features x (N, D) are L2-normalised. A look-up table V (L, D) holds one feature per
labeled identity, a circular queue U (Q, D) the features of recent unlabeled people. For a
labeled sample with identity t,

    p_j = exp(s * v_j . x) / (sum_k exp(s * v_k . x) + sum_k exp(s * u_k . x)),
    L = -1/N_l sum_{labeled i} log p_{t_i},

i.e. a cross-entropy over the L + Q scores s * [V; U] x, averaged over labeled samples only
(s = 1/tau is the scalar). V and U receive no gradient. After the loss is formed, each labeled
sample updates its row in order, v_t <- m v_t + (1 - m) x, v_t <- v_t / ||v_t||, and each
unlabeled sample is written into the queue at its head, which advances by one (mod Q).
Samples with a label outside [0, L) are unlabeled: they only enter the queue (the task marks
them with -1). Updates happen in training mode only.

Shapes: features (N, D) float (any dtype; computed in float32), labels (N,) int64.
Buffers: ``lut`` (C, D) with C = MethodContext.num_classes (5,532 training identities on
CUHK-SYSU), ``queue`` (queue_size, D), ``head`` () int64; all start at zero, as in the
reference implementations.

Defaults: scalar 30 and momentum 0.5, queue 5,000: serend1p1ty/SeqNet ``defaults.py``
(``OIM_SCALAR = 30.0``, ``OIM_MOMENTUM = 0.5``, ``CQ_SIZE = 5000``, ``LUT_SIZE = 5532``) and its
``models/oim.py``, which follow the paper (momentum gamma = 0.5, queue of 5,000 on CUHK-SYSU).
``normalize`` (True, ours) L2-normalises the incoming features, so the loss is correct for a
model that does not (the person-search model already normalises; then it is a no-op).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.methods.base import METHODS, Loss, LossConfig, MethodContext


@dataclass(frozen=True)
class OIMConfig(LossConfig):
    scalar: float = 30.0
    momentum: float = 0.5
    queue_size: int = 5000
    normalize: bool = True

    def validate(self) -> None:
        if self.scalar <= 0:
            raise ValueError(f"scalar must be > 0, got {self.scalar}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {self.queue_size}")


@METHODS.register
class OIMLoss(Loss):
    key = "oim"
    Config: ClassVar[type[OIMConfig]] = OIMConfig

    lut: Tensor
    queue: Tensor
    head: Tensor

    def __init__(self, cfg: OIMConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        self.register_buffer("lut", torch.zeros(ctx.num_classes, ctx.feature_dim))
        self.register_buffer("queue", torch.zeros(cfg.queue_size, ctx.feature_dim))
        self.register_buffer("head", torch.zeros((), dtype=torch.int64))

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        x = features.float()
        if self.cfg.normalize:
            x = F.normalize(x, dim=1)
        labeled = (labels >= 0) & (labels < self.lut.shape[0])
        scores = self.cfg.scalar * (x @ torch.cat([self.lut, self.queue]).t())
        if bool(labeled.any()):
            loss = F.cross_entropy(scores[labeled], labels[labeled])
        else:
            loss = scores.sum() * 0.0  # no labeled sample: nothing to classify
        if self.training:
            with torch.no_grad():
                self._update(x.detach(), labels, labeled)
        return loss

    def _update(self, x: Tensor, labels: Tensor, labeled: Tensor) -> None:
        self._update_lut(x[labeled], labels[labeled])
        self._enqueue(x[~labeled])

    def _update_lut(self, x: Tensor, labels: Tensor) -> None:
        """Sequential momentum updates, vectorised by rounds: round r applies the r-th
        occurrence of every identity in the batch (distinct rows, so one scatter each)."""
        if len(labels) == 0:
            return
        m = self.cfg.momentum
        order = torch.argsort(labels, stable=True)
        sorted_labels = labels[order]
        first = torch.ones_like(sorted_labels, dtype=torch.bool)
        first[1:] = sorted_labels[1:] != sorted_labels[:-1]
        start = torch.cummax(torch.where(first, torch.arange(len(order), device=x.device), 0), 0)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=x.device) - start.values
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            rows = labels[sel]
            updated = m * self.lut[rows] + (1.0 - m) * x[sel]
            self.lut[rows] = F.normalize(updated, dim=1)

    def _enqueue(self, x: Tensor) -> None:
        size = self.queue.shape[0]
        if size == 0 or len(x) == 0:
            return
        n = len(x)
        x = x[-size:]  # with more samples than slots the last ones win, as sequential writes
        start = int(self.head) + n - len(x)
        slots = (start + torch.arange(len(x), device=x.device)) % size
        self.queue[slots] = x.to(self.queue.dtype)
        self.head.fill_((int(self.head) + n) % size)
