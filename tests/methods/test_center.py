"""Center loss: value against a naive loop, and the weight-independent center update."""

from __future__ import annotations

import copy

import pytest
import torch

from cirbench.methods import build_method
from cirbench.methods.base import MethodContext
from cirbench.methods.center import CenterConfig, CenterLoss

CTX = MethodContext(num_classes=6, feature_dim=16)


def batch(n: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CTX.num_classes - 1, (n,), generator=gen)  # class 5 never seen
    return torch.randn(n, CTX.feature_dim, generator=gen), labels


def naive_center(feats: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> float:
    total = 0.0
    for f, y in zip(feats.tolist(), labels.tolist(), strict=True):
        sq = sum((a - b) ** 2 for a, b in zip(f, centers[y].tolist(), strict=True))
        total += min(max(sq, 1e-12), 1e12)
    return total / len(feats)


def naive_updated_centers(
    feats: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, lr: float
) -> torch.Tensor:
    """c_k - lr * dL/dc_k with dL/dc_k = -2/N sum_{i: y_i = k} (f_i - c_k)."""
    out = centers.clone()
    for k in range(len(centers)):
        grad = torch.zeros_like(centers[k])
        for f, y in zip(feats, labels.tolist(), strict=True):
            if y == k:
                grad -= 2.0 / len(feats) * (f - centers[k])
        out[k] = centers[k] - lr * grad
    return out


def test_matches_naive_loop() -> None:
    torch.manual_seed(0)
    loss = CenterLoss(CenterConfig(), CTX)
    assert loss.centers.shape == (CTX.num_classes, CTX.feature_dim)
    feats, labels = batch()
    want = naive_center(feats.double(), labels, loss.centers.detach().double())
    assert loss(feats, None, labels).item() == pytest.approx(want, rel=1e-6, abs=1e-5)


def test_identical_feature_and_center_is_clamped() -> None:
    loss = CenterLoss(CenterConfig(), CTX)
    feats = loss.centers.detach()[:3].clone().requires_grad_(True)
    value = loss(feats, None, torch.tensor([0, 1, 2]))
    value.backward()
    assert value.item() == pytest.approx(1e-12)
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


def one_step(
    weight: float, lr: float, method_copy: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centers before and after one step of the auxiliary optimizer."""
    torch.manual_seed(0)
    method = build_method("center", CTX, overrides={"center": {"weight": weight, "lr": lr}})
    if method_copy:
        method = copy.deepcopy(method)
    loss = method.losses["center"]
    assert isinstance(loss, CenterLoss)
    before = loss.centers.detach().clone()
    feats, labels = batch()
    feats.requires_grad_(True)
    terms = method(feats, labels, None)
    assert terms["total"].item() == pytest.approx(weight * terms["center"].item(), rel=1e-6)
    terms["total"].backward()
    want_feat_grad = weight * 2.0 / len(feats) * (feats.detach() - before[labels])
    assert feats.grad is not None
    torch.testing.assert_close(feats.grad, want_feat_grad, rtol=1e-5, atol=1e-9)
    (optimizer,) = method.auxiliary_optimizers()
    optimizer.step()
    return before, loss.centers.detach().clone()


@pytest.mark.parametrize("method_copy", [False, True])
def test_center_step_is_lr_times_unweighted_gradient(method_copy: bool) -> None:
    feats, labels = batch()
    lr = 0.5
    results = [one_step(w, lr, method_copy) for w in (5e-4, 1.0)]
    for before, after in results:
        want = naive_updated_centers(feats, labels, before, lr)
        torch.testing.assert_close(after, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(after[5], before[5], rtol=0.0, atol=0.0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_optimizer_is_not_a_submodule_and_is_created_once() -> None:
    loss = CenterLoss(CenterConfig(lr=0.25), CTX)
    assert list(loss.children()) == []
    assert set(loss.state_dict()) == {"centers"}
    first, second = loss.auxiliary_optimizers(), loss.auxiliary_optimizers()
    assert len(first) == 1 and first[0] is second[0]
    assert isinstance(first[0], torch.optim.SGD)
    assert first[0].param_groups[0]["lr"] == 0.25
    assert first[0].param_groups[0]["params"][0] is loss.centers


def test_no_grad_forward_registers_no_hook() -> None:
    loss = CenterLoss(CenterConfig(), CTX)
    feats, labels = batch()
    with torch.no_grad():
        value = loss(feats, None, labels)
    assert value.grad_fn is None


def test_reachable_through_build_method_with_overrides() -> None:
    method = build_method("center", CTX, overrides={"center": {"weight": "0.001", "lr": "0.1"}})
    loss = method.losses["center"]
    assert isinstance(loss, CenterLoss)
    assert loss.cfg.weight == 0.001 and loss.cfg.lr == 0.1
    assert method.configs()["center"] == {"weight": 0.001, "lr": 0.1}
    assert len(method.auxiliary_optimizers()) == 1
    assert build_method("center", CTX).configs()["center"] == {"weight": 5e-4, "lr": 0.5}
