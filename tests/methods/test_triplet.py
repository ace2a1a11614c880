"""Batch-hard triplet loss against a naive loop and pytorch-metric-learning."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers

from cirbench.methods import build_method
from cirbench.methods.base import MethodContext
from cirbench.methods.triplet import TripletConfig, TripletLoss

CTX = MethodContext(num_classes=8, feature_dim=16)


def make_loss(**fields: object) -> TripletLoss:
    return TripletLoss(TripletConfig(**fields), CTX)  # type: ignore[arg-type]


def batch(
    n: int = 24, dim: int = 16, classes: int = 5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=gen)]
    return torch.randn(n, dim, generator=gen), labels


def naive_distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> float:
    if distance == "cosine":
        cos = float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b)))
        return 1.0 - cos
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def naive_triplet(
    feats: torch.Tensor, labels: torch.Tensor, margin: float, soft: bool, distance: str
) -> float:
    total, count = 0.0, 0
    for i in range(len(labels)):
        pos = [
            naive_distance(feats[i], feats[j], distance)
            for j in range(len(labels))
            if j != i and labels[j] == labels[i]
        ]
        neg = [
            naive_distance(feats[i], feats[k], distance)
            for k in range(len(labels))
            if labels[k] != labels[i]
        ]
        if not pos or not neg:
            continue
        gap = max(pos) - min(neg)
        total += math.log1p(math.exp(gap)) if soft else max(0.0, gap + margin)
        count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize(
    ("soft", "distance"), list(itertools.product([False, True], ["euclidean", "cosine"]))
)
def test_matches_naive_loop(soft: bool, distance: str) -> None:
    feats, labels = batch()
    labels[0] = 99  # an anchor with no positive: excluded from the mean
    for margin in (0.3, 1.5):
        loss = make_loss(margin=margin, soft_margin=soft, distance=distance)
        got = loss(feats, None, labels)
        want = naive_triplet(feats.double(), labels, margin, soft, distance)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(want, abs=1e-5)


def pml_distance(distance: str) -> distances.BaseDistance:
    if distance == "cosine":
        return distances.CosineSimilarity()
    return distances.LpDistance(normalize_embeddings=False)


@pytest.mark.parametrize(
    ("soft", "distance"), list(itertools.product([False, True], ["euclidean", "cosine"]))
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_pytorch_metric_learning(soft: bool, distance: str, dtype: torch.dtype) -> None:
    # PML's BatchHardMiner keeps anchors with a positive and a negative; MeanReducer averages
    # over the mined triplets. Every anchor here has both. With smooth_loss PML computes
    # softplus(d_ap - d_an + margin), so the soft-margin comparison uses margin 0.
    feats, labels = batch(n=32, classes=8, seed=1)
    feats = feats.to(dtype)
    margin = 0.0 if soft else 0.3
    dist = pml_distance(distance)
    pml = losses.TripletMarginLoss(
        margin=margin, smooth_loss=soft, distance=dist, reducer=reducers.MeanReducer()
    )
    mined = miners.BatchHardMiner(distance=dist)(feats, labels)
    assert len(mined[0]) == len(labels)
    want = pml(feats, labels, mined)
    got = make_loss(margin=0.3, soft_margin=soft, distance=distance)(feats, None, labels)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_gradients_finite_for_identical_features() -> None:
    feats = torch.ones(8, 16, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    value = make_loss()(feats, None, labels)
    value.backward()
    assert value.item() == pytest.approx(0.3, abs=1e-5)
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


def test_gradients_finite_on_random_batch() -> None:
    feats, labels = batch()
    feats.requires_grad_(True)
    for distance in ("euclidean", "cosine"):
        feats.grad = None
        make_loss(distance=distance)(feats, None, labels).backward()
        assert feats.grad is not None and torch.isfinite(feats.grad).all()


def test_anchor_without_positive_is_excluded() -> None:
    feats, labels = batch(n=12, classes=3)
    loss = make_loss()
    base = loss(feats, None, labels)
    extra_feat = torch.randn(1, 16) * 100.0  # far away: would dominate the mean if included
    more_feats = torch.cat([feats, extra_feat])
    more_labels = torch.cat([labels, torch.tensor([42])])
    # The lone sample is a negative for others but far away, so their hardest negative is unchanged.
    assert loss(more_feats, None, more_labels).item() == pytest.approx(base.item(), abs=1e-6)


def test_no_valid_anchor_gives_connected_zero() -> None:
    feats = torch.randn(4, 16, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):
        value = make_loss()(feats, None, labels)
        assert value.item() == 0.0
        assert value.grad_fn is not None
        value.backward()
        assert feats.grad is not None and (feats.grad == 0).all()


def test_reachable_through_build_method_with_overrides() -> None:
    method = build_method(
        "triplet", CTX, overrides={"triplet": {"margin": "0.5", "distance": "cosine"}}
    )
    loss = method.losses["triplet"]
    assert isinstance(loss, TripletLoss)
    assert loss.cfg.margin == 0.5 and loss.cfg.distance == "cosine"
    feats, labels = batch()
    assert torch.isfinite(method(feats, labels, None)["total"])
