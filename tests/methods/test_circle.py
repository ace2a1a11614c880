"""Pairwise Circle loss against a naive loop and pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses, reducers

from cirbench.methods import build_method
from cirbench.methods.base import MethodContext
from cirbench.methods.circle import CircleConfig, CircleLoss

CTX = MethodContext(num_classes=8, feature_dim=16)
PAPER_SETTINGS = [(0.25, 128.0), (0.25, 256.0), (0.4, 80.0), (0.1, 2.0)]


def make_loss(m: float = 0.25, gamma: float = 128.0) -> CircleLoss:
    return CircleLoss(CircleConfig(m=m, gamma=gamma), CTX)


def batch(
    n: int = 24, dim: int = 16, classes: int = 5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=gen)]
    return torch.randn(n, dim, generator=gen), labels


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def naive_circle(feats: torch.Tensor, labels: torch.Tensor, m: float, gamma: float) -> float:
    rows, ys = feats.tolist(), labels.tolist()
    total, count = 0.0, 0
    for i in range(len(ys)):
        pos_terms, neg_terms = [], []
        for j in range(len(ys)):
            s = cosine(rows[i], rows[j])
            if j != i and ys[j] == ys[i]:
                pos_terms.append(-gamma * max(1 + m - s, 0.0) * (s - (1 - m)))
            elif ys[j] != ys[i]:
                neg_terms.append(gamma * max(s + m, 0.0) * (s - m))
        if pos_terms and neg_terms:
            total += softplus(logsumexp(pos_terms) + logsumexp(neg_terms))
            count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize(("m", "gamma"), PAPER_SETTINGS)
def test_matches_naive_loop(m: float, gamma: float) -> None:
    feats, labels = batch()
    labels[0] = 99  # an anchor with no positive: excluded from the mean
    want = naive_circle(feats.double(), labels, m, gamma)
    got64 = make_loss(m, gamma)(feats.double(), None, labels)
    assert got64.item() == pytest.approx(want, abs=1e-5)
    got32 = make_loss(m, gamma)(feats, None, labels)
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize(("m", "gamma"), PAPER_SETTINGS)
def test_matches_pytorch_metric_learning(m: float, gamma: float) -> None:
    # PML's MeanReducer averages over all N rows, zeroing rows without a positive or a negative;
    # every anchor here has both, so its mean is ours.
    feats, labels = batch(n=32, classes=8, seed=1)
    pml = losses.CircleLoss(m=m, gamma=gamma, reducer=reducers.MeanReducer())
    for dtype in (torch.float64, torch.float32):
        x = feats.to(dtype)
        want = pml(x, labels).item()
        got = make_loss(m, gamma)(x, None, labels).item()
        assert got == pytest.approx(want, rel=1e-5 if dtype == torch.float32 else 0.0, abs=1e-5)


def test_gradient_matches_pytorch_metric_learning() -> None:
    feats, labels = batch(n=32, classes=8, seed=2)
    ours = feats.double().requires_grad_(True)
    theirs = feats.double().requires_grad_(True)
    make_loss()(ours, None, labels).backward()
    losses.CircleLoss(m=0.25, gamma=128, reducer=reducers.MeanReducer())(theirs, labels).backward()
    assert ours.grad is not None and theirs.grad is not None
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-6, atol=1e-8)


def test_gradients_finite() -> None:
    feats, labels = batch()
    labels[0] = 99
    for x in (feats.clone(), torch.ones(24, 16)):
        x.requires_grad_(True)
        make_loss()(x, None, labels).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_anchor_without_positive_is_excluded() -> None:
    # PML's MeanReducer counts the lone anchor as a zero row; we leave it out of the mean.
    feats, labels = batch(n=12, classes=3)
    labels[0] = 42
    x = feats.double()
    pml = losses.CircleLoss(m=0.25, gamma=128, reducer=reducers.MeanReducer())(x, labels)
    got = make_loss()(x, None, labels)
    assert got.item() == pytest.approx(pml.item() * 12 / 11, abs=1e-5)
    assert got.item() == pytest.approx(naive_circle(x, labels, 0.25, 128.0), abs=1e-5)


def test_no_valid_anchor_gives_connected_zero() -> None:
    feats = torch.randn(4, 16, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):
        value = make_loss()(feats, None, labels)
        assert value.item() == 0.0
        assert value.grad_fn is not None
        value.backward()
        assert feats.grad is not None and (feats.grad == 0).all()


def test_reachable_through_build_method_with_overrides() -> None:
    method = build_method("circle", CTX, overrides={"circle": {"m": "0.4", "gamma": "80"}})
    loss = method.losses["circle"]
    assert isinstance(loss, CircleLoss)
    assert loss.cfg.m == 0.4 and loss.cfg.gamma == 80.0
    defaulted = build_method("circle", CTX, defaults={"circle": {"gamma": 256.0}})
    assert defaulted.configs()["circle"] == {"weight": 1.0, "m": 0.25, "gamma": 256.0}
    feats, labels = batch()
    assert torch.isfinite(method(feats, labels, None)["total"])
