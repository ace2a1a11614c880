from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cirbench.errors import CirbenchError
from cirbench.methods import MethodContext, build_method
from cirbench.methods.base import FEATURES
from cirbench.methods.proto import ProtoConfig, PrototypicalLoss, support_sizes

CTX = MethodContext(num_classes=10, feature_dim=8)


def naive_proto(
    features: torch.Tensor, labels: torch.Tensor, n_support: int | None
) -> torch.Tensor:
    """Per class: the first n (batch order) samples are support, the rest queries."""
    classes = sorted(set(labels.tolist()))
    protos, queries = [], []
    for k, c in enumerate(classes):
        idx = [i for i in range(len(labels)) if int(labels[i]) == c]
        n = len(idx) // 2 if n_support is None else n_support
        n = min(max(n, 1), max(len(idx) - 1, 1))
        protos.append(features[idx[:n]].mean(dim=0))
        queries += [(i, k) for i in idx[n:]]
    p = torch.stack(protos)
    losses = []
    for i, k in queries:
        logits = -((features[i] - p) ** 2).sum(dim=1)
        losses.append(F.cross_entropy(logits[None], torch.tensor([k])))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("n_support", [None, 1, 3])
def test_matches_a_per_query_loop_on_a_shuffled_pk_batch(n_support: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([3, 7, 1, 3, 7, 1, 3, 7, 1, 1, 3, 7])  # P = 3 classes, K = 4, mixed order
    feats = torch.randn(12, 8, generator=gen, dtype=torch.float64)
    loss = PrototypicalLoss(ProtoConfig(n_support=n_support), CTX)(feats, None, labels)
    assert loss.item() == pytest.approx(naive_proto(feats, labels, n_support).item(), rel=1e-10)


def test_unequal_class_sizes_and_a_single_sample_class() -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])  # class 2 has one sample: support only
    feats = torch.randn(8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = PrototypicalLoss(ProtoConfig(), CTX)(feats, None, labels)
    assert loss.item() == pytest.approx(naive_proto(feats.detach(), labels, None).item())
    loss.backward()
    assert feats.grad is not None and bool(feats.grad[7].abs().sum() > 0)  # its prototype matters


def test_support_sizes_are_clamped() -> None:
    counts = torch.tensor([1, 2, 4, 5])
    assert support_sizes(counts, None).tolist() == [1, 1, 2, 2]
    assert support_sizes(counts, 4).tolist() == [1, 1, 3, 4]


def test_well_separated_classes_give_a_small_loss_and_no_query_gives_zero() -> None:
    labels = torch.arange(4).repeat_interleave(4)
    feats = 100.0 * F.one_hot(labels, 8).float() + 0.01 * torch.randn(16, 8)
    assert PrototypicalLoss(ProtoConfig(), CTX)(feats, None, labels).item() < 1e-6
    one_each = torch.randn(4, 8, requires_grad=True)
    zero = PrototypicalLoss(ProtoConfig(), CTX)(one_each, None, torch.arange(4))
    assert zero.item() == 0.0
    zero.backward()  # still attached to the graph


def test_registered_features_only_and_config_checked() -> None:
    method = build_method("proto", CTX, {"proto": {"n_support": "2"}})
    assert method.requires == frozenset({FEATURES})
    assert method.configs()["proto"] == {"weight": 1.0, "n_support": 2}
    assert build_method("proto+cir", CTX).name == "cir+proto"
    with pytest.raises(CirbenchError, match="n_support must be >= 1"):
        build_method("proto", CTX, {"proto": {"n_support": "0"}})
