"""Tests for ``cir``, the Class Interference Regularization feature perturbation.

Expected values are computed with plain Python loops over classes and samples, independent of
the vectorised implementation in :mod:`cirbench.methods.cir`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cirbench.methods import MethodContext, build_method
from cirbench.methods.cir import CIRConfig, ClassInterference

C, D = 6, 5
CTX = MethodContext(num_classes=C, feature_dim=D)


def make_cir(**fields: Any) -> ClassInterference:
    """Build through the public path: ``build_method("cir+ce", ...)`` with string overrides."""
    overrides = {"cir": {k: str(v) for k, v in fields.items()}}
    method = build_method("cir+ce", CTX, overrides=overrides)
    cir = method.perturbations[0]
    assert isinstance(cir, ClassInterference)
    cir.train()
    return cir


def batch(n: int, classes: list[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Features (n, D) and labels cycling through ``classes`` (every class present)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([classes[i % len(classes)] for i in range(n)])
    offsets = torch.randn(C, D, generator=gen) * 3.0
    features = torch.randn(n, D, generator=gen) + offsets[labels]
    return features, labels


def loop_centroids(features: Tensor, labels: Tensor) -> dict[int, Tensor]:
    """Per-class mean of the batch, by a Python loop over samples."""
    sums: dict[int, Tensor] = {}
    counts: dict[int, int] = {}
    for f, y in zip(features, labels.tolist(), strict=True):
        sums[y] = sums.get(y, torch.zeros(D)) + f
        counts[y] = counts.get(y, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def loop_mean_target(centroids: dict[int, Tensor], y: int) -> Tensor:
    others = [c for k, c in centroids.items() if k != y]
    total = torch.zeros(D)
    for c in others:
        total = total + c
    return total / len(others)


def coefficient(f: Tensor, moved: Tensor, t: Tensor) -> tuple[float, float]:
    """Best ``a`` in ``moved = f + a (t - f)`` and the residual norm of that fit."""
    d = t - f
    delta = moved - f
    a = float(delta @ d / (d @ d))
    return a, float((delta - a * d).norm())


# --------------------------------------------------------------------------- identities


def test_p_zero_is_identity_in_training() -> None:
    features, labels = batch(40, [0, 1, 2, 3])
    for fields in [{}, {"strength_mode": "fixed", "strength": 1.0, "target": "random"}]:
        cir = make_cir(p=0.0, **fields)
        torch.manual_seed(0)
        out = cir(features, labels)
        assert torch.equal(out, features)


@pytest.mark.parametrize(
    "fields",
    [
        {"p": 1.0},
        {"p": 0.5, "centroids": "ema"},
        {"p": 1.0, "normalize_input": True, "normalize_output": True, "target": "random"},
    ],
)
def test_eval_mode_is_identity(fields: dict[str, Any]) -> None:
    features, labels = batch(40, [0, 1, 2, 3])
    cir = make_cir(strength_mode="fixed", strength=0.7, **fields)
    cir.eval()
    torch.manual_seed(0)
    assert torch.equal(cir(features, labels), features)
    # and the same module does move features in training mode
    cir.train()
    assert not torch.equal(cir(features, labels), features)


def test_method_eval_gives_unperturbed_loss() -> None:
    features, labels = batch(40, [0, 1, 2, 3])
    head = nn.Linear(D, C)
    method = build_method("cir+ce", CTX, overrides={"cir": {"p": "1", "strength": "0.9"}})
    plain = build_method("ce", CTX)
    method.eval()
    with torch.no_grad():
        expected = plain(features, labels, head)["ce"]
        assert torch.equal(method(features, labels, head)["ce"], expected)
        method.train()
        torch.manual_seed(0)
        assert not torch.equal(method(features, labels, head)["ce"], expected)


# --------------------------------------------------------------------------- exact update


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_fixed_strength_mean_target_matches_loop(lam: float) -> None:
    # classes 0..3 present, 4 and 5 absent; unequal class counts so that the mean of centroids
    # (each class counts once) differs from the mean of all negative samples
    features, labels = batch(23, [0, 1, 1, 2, 3, 3, 3])
    cir = make_cir(p=1.0, strength_mode="fixed", strength=lam, target="mean", centroids="batch")
    out = cir(features, labels)
    cents = loop_centroids(features, labels)
    assert set(cents) == {0, 1, 2, 3}
    for i in range(len(labels)):
        t = loop_mean_target(cents, int(labels[i]))
        expected = (1 - lam) * features[i] + lam * t
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


def test_mean_target_weights_classes_not_samples() -> None:
    # 1 sample of class 0, 9 of class 1, 1 of class 2: the target for class 2 is the midpoint of
    # the two centroids, not the sample mean of the 10 negatives
    features = torch.zeros(11, D)
    features[0, 0] = 10.0  # class 0 centroid: 10 e0
    features[1:10, 1] = 10.0  # class 1 centroid: 10 e1
    labels = torch.tensor([0] + [1] * 9 + [2])
    cir = make_cir(p=1.0, strength_mode="fixed", strength=1.0, target="mean")
    out = cir(features, labels)
    expected = torch.zeros(D)
    expected[0] = expected[1] = 5.0
    torch.testing.assert_close(out[10], expected, rtol=0, atol=1e-6)


def test_uniform_mean_target_is_on_segment() -> None:
    torch.manual_seed(1)
    strength = 0.6
    features, labels = batch(300, [0, 2, 3, 5], seed=1)
    cir = make_cir(p=1.0, strength_mode="uniform", strength=strength, target="mean")
    out = cir(features, labels)
    cents = loop_centroids(features, labels)
    coeffs = []
    for i in range(len(labels)):
        a, residual = coefficient(features[i], out[i], loop_mean_target(cents, int(labels[i])))
        assert residual < 1e-4, f"sample {i} is not moved toward its target"
        assert -1e-6 <= a <= strength + 1e-6
        coeffs.append(a)
    # the strengths are drawn per sample, spread over (0, strength)
    assert min(coeffs) < 0.1 * strength
    assert max(coeffs) > 0.9 * strength
    assert sum(coeffs) / len(coeffs) == pytest.approx(strength / 2, abs=0.05)


def test_uniform_random_target_is_a_negative_centroid() -> None:
    torch.manual_seed(2)
    strength = 0.8
    features, labels = batch(300, [0, 1, 3, 4], seed=2)
    cir = make_cir(p=1.0, strength_mode="uniform", strength=strength, target="random")
    out = cir(features, labels)
    cents = loop_centroids(features, labels)
    for i in range(len(labels)):
        y = int(labels[i])
        if (out[i] - features[i]).norm() < 1e-3:
            continue  # a ~ 0: the direction is not identifiable
        fits = {k: coefficient(features[i], out[i], c) for k, c in cents.items()}
        matches = [k for k, (a, res) in fits.items() if res < 1e-4]
        assert len(matches) == 1, f"sample {i}: target is not exactly one class centroid"
        k = matches[0]
        assert k != y, f"sample {i} of class {y} moved toward its own centroid"
        assert -1e-6 <= fits[k][0] <= strength + 1e-6


def test_random_target_is_uniform_over_negatives() -> None:
    torch.manual_seed(3)
    lam = 0.5
    classes = [0, 1, 2, 5]
    features, labels = batch(2400, classes, seed=3)
    cir = make_cir(p=1.0, strength_mode="fixed", strength=lam, target="random")
    out = cir(features, labels)
    cents = loop_centroids(features, labels)
    stacked = torch.stack([cents[k] for k in classes])
    recovered = features + (out - features) / lam  # t = f + (f' - f) / lam
    dist = (recovered[:, None, :] - stacked[None, :, :]).norm(dim=2)
    assert dist.min(dim=1).values.max() < 1e-4, "a target is not a class centroid"
    chosen = torch.tensor(classes)[dist.argmin(dim=1)]
    assert not (chosen == labels).any(), "a sample's target is its own class centroid"
    for y in classes:
        picks = chosen[labels == y]
        for k in classes:
            if k != y:
                frac = (picks == k).float().mean().item()
                assert frac == pytest.approx(1 / 3, abs=0.06), (y, k, frac)


@pytest.mark.parametrize("target", ["mean", "random"])
def test_single_class_batch_is_unchanged(target: str) -> None:
    features, labels = batch(12, [4])
    cir = make_cir(p=1.0, strength_mode="fixed", strength=1.0, target=target)
    torch.manual_seed(0)
    assert torch.equal(cir(features, labels), features)


def test_single_class_batch_with_ema_first_batch_is_unchanged() -> None:
    features, labels = batch(12, [4])
    cir = make_cir(p=1.0, strength_mode="fixed", strength=1.0, centroids="ema")
    assert torch.equal(cir(features, labels), features)


def test_every_sample_with_a_negative_is_moved() -> None:
    # the other samples are moved, none is left out because of a lone sample elsewhere
    features, labels = batch(9, [0, 1, 1, 1, 1, 1, 1, 1, 2])
    cir = make_cir(p=1.0, strength_mode="fixed", strength=0.5)
    out = cir(features, labels)
    assert not torch.isclose(out, features).all(dim=1).any()


# --------------------------------------------------------------------------- gradients


def test_gradient_reaches_backbone() -> None:
    torch.manual_seed(4)
    backbone = nn.Linear(7, D)
    head = nn.Linear(D, C)
    method = build_method("cir+ce", CTX, overrides={"cir": {"p": "1.0"}})
    method.train()
    x = torch.randn(32, 7)
    labels = torch.arange(32) % C
    terms = method(backbone(x), labels, head)
    terms["total"].backward()
    grad = backbone.weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("target", ["mean", "random"])
@pytest.mark.parametrize("centroids", ["batch", "ema"])
def test_targets_are_detached(target: str, centroids: str) -> None:
    lam = 0.3
    features, labels = batch(20, [0, 1, 2, 3])
    features.requires_grad_(True)
    cir = make_cir(p=1.0, strength_mode="fixed", strength=lam, target=target, centroids=centroids)
    cir(features, labels).sum().backward()
    assert features.grad is not None
    torch.testing.assert_close(features.grad, torch.full_like(features, 1 - lam))


def test_uniform_gradient_is_one_minus_own_strength() -> None:
    torch.manual_seed(5)
    features, labels = batch(50, [0, 1, 2])
    features.requires_grad_(True)
    cir = make_cir(p=1.0, strength_mode="uniform", strength=1.0, target="mean")
    out = cir(features, labels)
    out.sum().backward()
    assert features.grad is not None
    cents = loop_centroids(features.detach(), labels)
    for i in range(len(labels)):
        a, _ = coefficient(
            features[i].detach(), out[i].detach(), loop_mean_target(cents, int(labels[i]))
        )
        torch.testing.assert_close(features.grad[i], torch.full((D,), 1 - a), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- EMA memory


def test_ema_memory_updates() -> None:
    m = 0.8
    cir = make_cir(p=0.5, centroids="ema", momentum=m)
    assert torch.equal(cir.memory, torch.zeros(C, D))
    assert not cir.seen.any()

    f1, y1 = batch(15, [0, 2, 3], seed=10)
    cir(f1, y1)
    first = loop_centroids(f1, y1)
    for k in range(C):
        if k in first:
            torch.testing.assert_close(cir.memory[k], first[k], rtol=0, atol=1e-6)
            assert cir.seen[k]
        else:
            assert torch.equal(cir.memory[k], torch.zeros(D))
            assert not cir.seen[k]

    after_first = cir.memory.clone()
    f2, y2 = batch(16, [2, 3, 4, 4], seed=11)
    cir(f2, y2)
    second = loop_centroids(f2, y2)
    for k in range(C):
        if k in second and k in first:
            expected = m * after_first[k] + (1 - m) * second[k]
        elif k in second:  # first time seen: the batch mean, not a decay from zero
            expected = second[k]
        else:
            expected = after_first[k]
        torch.testing.assert_close(cir.memory[k], expected, rtol=0, atol=1e-6)
    assert cir.seen.tolist() == [k in first or k in second for k in range(C)]


def test_ema_targets_use_updated_memory_of_all_seen_classes() -> None:
    m, lam = 0.5, 0.4
    cir = make_cir(p=1.0, strength_mode="fixed", strength=lam, centroids="ema", momentum=m)
    f1, y1 = batch(12, [0, 1, 2], seed=20)
    cir(f1, y1)
    f2, y2 = batch(12, [1, 3], seed=21)
    out = cir(f2, y2)
    memory = cir.memory.clone()  # updated before the targets were taken
    seen = [k for k in range(C) if cir.seen[k]]
    assert seen == [0, 1, 2, 3]
    for i in range(len(y2)):
        y = int(y2[i])
        negatives = [memory[k] for k in seen if k != y]
        t = sum(negatives, torch.zeros(D)) / len(negatives)
        expected = (1 - lam) * f2[i] + lam * t
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


def test_ema_memory_frozen_in_eval() -> None:
    cir = make_cir(p=1.0, centroids="ema")
    f1, y1 = batch(12, [0, 1], seed=30)
    cir(f1, y1)
    memory, seen = cir.memory.clone(), cir.seen.clone()
    cir.eval()
    f2, y2 = batch(12, [1, 2, 3], seed=31)
    cir(f2, y2)
    assert torch.equal(cir.memory, memory)
    assert torch.equal(cir.seen, seen)


def test_ema_memory_in_state_dict() -> None:
    cir = make_cir(p=1.0, centroids="ema")
    f1, y1 = batch(12, [0, 1, 5], seed=40)
    cir(f1, y1)
    state = cir.state_dict()
    assert set(state) == {"memory", "seen"}
    assert dict(cir.named_buffers()).keys() == {"memory", "seen"}
    assert list(cir.parameters()) == []
    fresh = make_cir(p=1.0, centroids="ema")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.memory, cir.memory)
    assert torch.equal(fresh.seen, cir.seen)
    # buffers travel with the method's state dict too
    method = build_method("cir+ce", CTX, overrides={"cir": {"centroids": "ema"}})
    assert {"perturbations.0.memory", "perturbations.0.seen"} <= set(method.state_dict())


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_normalize_output_gives_unit_norm(p: float) -> None:
    torch.manual_seed(6)
    features, labels = batch(40, [0, 1, 2, 3])
    cir = make_cir(p=p, normalize_output=True)
    out = cir(features, labels)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(40), rtol=0, atol=1e-5)


def test_normalize_input_targets_from_normalized_features() -> None:
    lam = 0.6
    features, labels = batch(30, [0, 1, 2, 4, 4], seed=7)
    cir = make_cir(p=1.0, strength_mode="fixed", strength=lam, normalize_input=True)
    out = cir(features, labels)
    normed = torch.stack([f / f.norm() for f in features])
    cents = loop_centroids(normed, labels)
    for i in range(len(labels)):
        t = loop_mean_target(cents, int(labels[i]))
        expected = (1 - lam) * normed[i] + lam * t
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)
    # and it differs from moving the raw features
    raw = make_cir(p=1.0, strength_mode="fixed", strength=lam)(features, labels)
    assert not torch.allclose(raw, out, atol=1e-3)
    assert torch.allclose(F.normalize(features, dim=1), normed, atol=1e-6)


# --------------------------------------------------------------------------- probability


def test_fraction_perturbed_is_about_p() -> None:
    torch.manual_seed(8)
    n = 20_000
    features = torch.randn(n, D)
    labels = torch.randint(0, C, (n,))
    cir = make_cir(p=0.3, strength_mode="fixed", strength=0.5)
    out = cir(features, labels)
    changed = (out != features).any(dim=1)
    assert changed.float().mean().item() == pytest.approx(0.3, abs=0.02)
    # samples that are not chosen are bitwise unchanged
    assert torch.equal(out[~changed], features[~changed])


# --------------------------------------------------------------------------- configs


def test_defaults() -> None:
    cfg = make_cir().cfg
    assert cfg == CIRConfig()
    assert (cfg.p, cfg.strength, cfg.strength_mode) == (0.5, 0.5, "uniform")
    assert (cfg.target, cfg.centroids, cfg.momentum) == ("mean", "batch", 0.9)
    assert not cfg.normalize_input and not cfg.normalize_output


def test_direct_construction_matches_built() -> None:
    features, labels = batch(20, [0, 1, 2])
    cfg = CIRConfig(p=1.0, strength=0.4, strength_mode="fixed")
    direct = ClassInterference(cfg, CTX).train()
    built = make_cir(p=1.0, strength=0.4, strength_mode="fixed")
    assert built.cfg == cfg
    assert torch.equal(direct(features, labels), built(features, labels))
