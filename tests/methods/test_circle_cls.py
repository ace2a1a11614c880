from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cirbench.methods import MethodContext, build_method
from cirbench.methods.circle_cls import CircleClassLoss


def loop_loss(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, m: float, gamma: float) -> float:
    """Sun et al. 2020, Eq. 1 with class-level labels, one sample at a time."""
    total = 0.0
    for i in range(len(y)):
        s = [float(F.cosine_similarity(x[i], w[j], dim=0)) for j in range(len(w))]
        sp = s[int(y[i])]
        ap = max(0.0, 1 + m - sp)
        pos = -gamma * ap * (sp - (1 - m))
        neg = sum(
            math.exp(gamma * max(0.0, sn + m) * (sn - m))
            for j, sn in enumerate(s)
            if j != int(y[i])
        )
        total += math.log1p(neg * math.exp(pos))
    return total / len(y)


def test_matches_a_per_sample_loop() -> None:
    torch.manual_seed(0)
    method = build_method(
        "circle-cls",
        MethodContext(num_classes=5, feature_dim=8),
        overrides={"circle-cls": {"gamma": "16"}},
    )
    loss = method.losses["circle-cls"]
    assert isinstance(loss, CircleClassLoss)
    x = torch.randn(12, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (12,))
    got = loss(x, None, y)
    want = loop_loss(x, loss.proxies.detach().double(), y, 0.25, 16.0)
    assert float(got.detach()) == pytest.approx(want, rel=1e-9)


def test_trains_its_proxies_with_its_own_optimizer() -> None:
    torch.manual_seed(1)
    method = build_method("circle-cls", MethodContext(num_classes=4, feature_dim=6))
    (opt,) = method.auxiliary_optimizers()
    loss = method.losses["circle-cls"]
    before = loss.proxies.detach().clone()
    x = torch.randn(8, 6, requires_grad=True)
    y = torch.arange(4).repeat(2)
    terms = method(x, y, None)
    terms["total"].backward()
    assert x.grad is not None and loss.proxies.grad is not None
    opt.step()
    assert not torch.equal(before, loss.proxies.detach())
    assert method.requires == frozenset({"features"})


def test_loss_decreases_when_features_align_with_their_proxy() -> None:
    method = build_method("circle-cls", MethodContext(num_classes=3, feature_dim=4))
    loss = method.losses["circle-cls"]
    y = torch.tensor([0, 1, 2])
    aligned = loss.proxies.detach().clone()
    random = torch.randn(3, 4)
    assert loss(aligned, None, y).item() < loss(random, None, y).item()
