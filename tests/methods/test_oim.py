"""OIM loss against a naive per-sample loop (loss, LUT and queue updates over several steps),
and CIR's handling of unlabeled samples (labels outside [0, C)) used by ``cir+oim``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cirbench.methods import MethodContext, build_method
from cirbench.methods.oim import OIMConfig, OIMLoss


def naive_step(x, labels, lut, queue, head, scalar, momentum):
    """One batch, sample by sample: loss over labeled samples, then in-order updates."""
    x = F.normalize(x.double(), dim=1)
    bank = torch.cat([lut, queue])
    losses = []
    for xi, yi in zip(x, labels, strict=True):
        if 0 <= yi < len(lut):
            logits = scalar * (bank @ xi)
            losses.append(-(logits[yi] - torch.logsumexp(logits, 0)))
    loss = torch.stack(losses).mean() if losses else torch.zeros((), dtype=torch.float64)
    lut, queue = lut.clone(), queue.clone()
    for xi, yi in zip(x.detach(), labels, strict=True):
        if 0 <= yi < len(lut):
            v = momentum * lut[yi] + (1 - momentum) * xi
            lut[yi] = v / v.norm()
        elif len(queue):
            queue[head] = xi
            head = (head + 1) % len(queue)
    return loss, lut, queue, head


@pytest.mark.parametrize("queue_size", [5, 0, 64])
def test_matches_naive_loop_over_steps(queue_size: int) -> None:
    torch.manual_seed(0)
    num_classes, dim = 7, 6
    cfg = OIMConfig(queue_size=queue_size)
    oim = OIMLoss(cfg, MethodContext(num_classes, dim)).train()
    lut = torch.zeros(num_classes, dim, dtype=torch.float64)
    queue = torch.zeros(queue_size, dim, dtype=torch.float64)
    head = 0
    for step in range(6):
        n = 12
        x = torch.randn(n, dim)
        # repeated identities in one batch, unlabeled as -1 and as num_classes; a step with
        # 7 unlabeled samples overflows a 5-slot queue
        labels = torch.randint(0, 4, (n,))
        labels[torch.randperm(n)[: 3 + step]] = torch.tensor([-1, num_classes] * 5)[: 3 + step]
        want, lut, queue, head = naive_step(x, labels, lut, queue, head, 30.0, 0.5)
        got = oim(x, None, labels)
        assert float(got) == pytest.approx(float(want), rel=1e-5, abs=1e-5)
        torch.testing.assert_close(oim.lut.double(), lut, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(oim.queue.double(), queue, rtol=1e-5, atol=1e-6)
        assert int(oim.head) == head


def test_gradient_reaches_features_only_and_eval_does_not_update() -> None:
    torch.manual_seed(1)
    oim = OIMLoss(OIMConfig(queue_size=4), MethodContext(3, 5)).train()
    oim(torch.randn(6, 5), None, torch.tensor([0, 1, 2, -1, -1, 0]))  # fill the memory
    x = torch.randn(6, 5, requires_grad=True)
    loss = oim(x, None, torch.tensor([0, 1, 2, -1, 1, 0]))
    loss.backward()
    assert x.grad is not None and bool(x.grad[:3].abs().sum() > 0)
    assert not oim.lut.requires_grad and list(oim.parameters()) == []
    before = (oim.lut.clone(), oim.queue.clone(), int(oim.head))
    oim.eval()
    oim(torch.randn(6, 5), None, torch.tensor([0, 1, 2, -1, -1, 0]))
    assert torch.equal(oim.lut, before[0]) and torch.equal(oim.queue, before[1])
    assert int(oim.head) == before[2]


def test_batch_without_labeled_samples_gives_zero_with_graph() -> None:
    oim = OIMLoss(OIMConfig(queue_size=4), MethodContext(3, 5)).train()
    x = torch.randn(2, 5, requires_grad=True)
    loss = oim(x, None, torch.tensor([-1, -1]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert int(oim.head) == 2


def test_buffers_sized_from_context_and_checkpointed() -> None:
    method = build_method("oim", MethodContext(num_classes=5532, feature_dim=256))
    state = method.state_dict()
    assert state["losses.oim.lut"].shape == (5532, 256)
    assert state["losses.oim.queue"].shape == (5000, 256)
    assert method.configs()["oim"] == {
        "weight": 1.0,
        "scalar": 30.0,
        "momentum": 0.5,
        "queue_size": 5000,
        "normalize": True,
    }


@pytest.mark.parametrize("centroids", ["batch", "ema"])
def test_cir_leaves_unlabeled_samples_alone(centroids: str) -> None:
    """cir.py change: labels outside [0, C) pass through and do not touch the centroids.

    CIR draws its random numbers for every sample of the batch (picking out the labelled ones
    first would need a host sync), so the comparison with CIR on the labelled subset alone uses
    the setting without randomness: p = 1 and a fixed strength."""
    ctx = MethodContext(num_classes=4, feature_dim=3)
    overrides = {"cir": {"p": "1.0", "strength_mode": "fixed", "centroids": centroids}}
    full = build_method("cir+oim", ctx, overrides).train()
    part = build_method("cir+oim", ctx, overrides).train()
    x = torch.randn(8, 3)
    labels = torch.tensor([0, 1, -1, 2, 4, 1, -1, 3])
    known = (labels >= 0) & (labels < 4)
    cir_full, cir_part = full.perturbations[0], part.perturbations[0]
    torch.manual_seed(3)
    moved = cir_full(x, labels)
    torch.manual_seed(3)
    moved_known = cir_part(x[known], labels[known])
    torch.testing.assert_close(moved[known], moved_known)
    torch.testing.assert_close(moved[~known], x[~known])
    assert not torch.equal(moved[known], x[known])
    if centroids == "ema":
        assert torch.equal(cir_full.memory, cir_part.memory)
        assert cir_full.seen.tolist() == [True, True, True, True]


def test_cir_plus_oim_runs_with_unlabeled_and_backpropagates() -> None:
    method = build_method("cir+oim", MethodContext(num_classes=4, feature_dim=3)).train()
    x = torch.randn(6, 3, requires_grad=True)
    terms = method(x, torch.tensor([0, 1, -1, 2, -1, 1]), None)
    terms["total"].backward()
    assert set(terms) == {"oim", "total"} and x.grad is not None
    assert int(method.losses["oim"].head) == 2
