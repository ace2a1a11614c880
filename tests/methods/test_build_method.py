"""Tests for method specs, composition and the ce / ls losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cirbench.errors import CirbenchError
from cirbench.methods import Method, MethodContext, MethodSpec, build_method
from cirbench.methods.base import FEATURES, LOGITS, check_requirements

CTX = MethodContext(num_classes=5, feature_dim=8)


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("triplet+cir", "cir+triplet"),
        ("cir+triplet", "cir+triplet"),
        ("ls+cir+ce", "cir+ce+ls"),
        ("ce+ls+cir", "cir+ce+ls"),
        ("triplet+ls+ce", "ce+ls+triplet"),
        (" ce + cir ", "cir+ce"),
        ("ce", "ce"),
    ],
)
def test_method_spec_is_order_insensitive(spec: str, expected: str) -> None:
    assert MethodSpec.parse(spec).name == expected


def test_perturbation_only_spec_has_no_loss() -> None:
    with pytest.raises(CirbenchError, match="no loss"):
        MethodSpec.parse("cir")
    with pytest.raises(CirbenchError, match="no loss"):
        build_method("cir", CTX)


def test_unknown_key_suggests_close_match() -> None:
    with pytest.raises(CirbenchError) as info:
        MethodSpec.parse("cir+tripplet")
    msg = str(info.value)
    assert "'tripplet'" in msg
    assert "Did you mean 'triplet'" in msg


@pytest.mark.parametrize(("spec", "what"), [("ce+ce", "given twice"), ("ce++ls", "empty")])
def test_bad_specs(spec: str, what: str) -> None:
    with pytest.raises(CirbenchError, match=what):
        MethodSpec.parse(spec)
    with pytest.raises(CirbenchError, match=what):
        build_method(spec, CTX)


@pytest.mark.parametrize("spec", ["+ce", "ce+", ""])
def test_leading_trailing_or_empty_components(spec: str) -> None:
    with pytest.raises(CirbenchError, match="empty"):
        MethodSpec.parse(spec)


# --------------------------------------------------------------------------- build_method


def test_build_method_structure() -> None:
    method = build_method("ls+cir+ce", CTX)
    assert isinstance(method, Method)
    assert method.name == "cir+ce+ls"
    assert [p.key for p in method.perturbations] == ["cir"]
    assert list(method.losses) == ["ce", "ls"]
    assert method.requires == frozenset({LOGITS})
    assert set(method.configs()) == {"cir", "ce", "ls"}


def test_build_method_applies_overrides() -> None:
    method = build_method("ce+ls", CTX, overrides={"ls": {"eps": "0.2"}, "ce": {"weight": "2.0"}})
    assert method.losses["ls"].cfg.eps == 0.2
    assert method.losses["ls"].cfg.weight == 1.0
    assert method.losses["ce"].cfg.weight == 2.0
    assert method.configs()["ls"] == {"weight": 1.0, "eps": 0.2}


def test_build_method_wrong_type_override() -> None:
    with pytest.raises(CirbenchError, match=r"--set ls\.eps"):
        build_method("ce+ls", CTX, overrides={"ls": {"eps": "abc"}})


def test_build_method_validate_error_override() -> None:
    with pytest.raises(CirbenchError, match="eps must be in"):
        build_method("ls", CTX, overrides={"ls": {"eps": "1.0"}})


def test_build_method_ignores_sections_of_other_components() -> None:
    method = build_method("ce", CTX, overrides={"ls": {"eps": "0.2"}}, defaults={"ls": {"x": 1}})
    assert list(method.losses) == ["ce"]


def test_defaults_then_overrides() -> None:
    both = build_method("ls", CTX, overrides={"ls": {"eps": "0.2"}}, defaults={"ls": {"eps": 0.3}})
    assert both.losses["ls"].cfg.eps == 0.2
    only_defaults = build_method("ls", CTX, defaults={"ls": {"eps": 0.3}})
    assert only_defaults.losses["ls"].cfg.eps == 0.3
    neither = build_method("ls", CTX)
    assert neither.losses["ls"].cfg.eps == 0.1


def test_defaults_do_not_leak_between_builds() -> None:
    build_method("ls", CTX, overrides={"ls": {"eps": "0.4"}})
    assert build_method("ls", CTX).losses["ls"].cfg.eps == 0.1


# --------------------------------------------------------------------------- forward


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    torch.manual_seed(seed)
    features = torch.randn(n, CTX.feature_dim)
    labels = torch.randint(0, CTX.num_classes, (n,))
    head = nn.Linear(CTX.feature_dim, CTX.num_classes)
    return features, labels, head


def test_forward_total_is_weighted_sum() -> None:
    features, labels, head = _batch()
    method = build_method("ce+ls", CTX, overrides={"ce": {"weight": "2"}, "ls": {"weight": "0.5"}})
    terms = method(features, labels, head)
    assert set(terms) == {"ce", "ls", "total"}
    assert terms["ce"].ndim == 0 and terms["ls"].ndim == 0
    expected = 2.0 * terms["ce"] + 0.5 * terms["ls"]
    torch.testing.assert_close(terms["total"], expected, rtol=0, atol=1e-6)
    # the terms differ, so the weights are really applied per term
    assert abs(terms["ce"].item() - terms["ls"].item()) > 1e-4
    # the total carries the gradient, the logged terms do not
    assert terms["total"].requires_grad
    assert not terms["ce"].requires_grad and not terms["ls"].requires_grad
    terms["total"].backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_check_requirements() -> None:
    method = build_method("ce", CTX)
    with pytest.raises(CirbenchError) as info:
        check_requirements(method.spec, frozenset({FEATURES}), "retrieval-task")
    msg = str(info.value)
    assert "'ce'" in msg and "logits" in msg and "'retrieval-task'" in msg
    check_requirements(method.spec, frozenset({FEATURES, LOGITS}), "digits")  # no error


# --------------------------------------------------------------------------- naive loops


def _naive_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    total = 0.0
    for i in range(logits.shape[0]):
        row = [float(v) for v in logits[i]]
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        total += -(row[int(labels[i])] - log_z)
    return total / logits.shape[0]


def _naive_ls(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    n, c = logits.shape
    total = 0.0
    for i in range(n):
        row = [float(v) for v in logits[i]]
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        for k in range(c):
            q = (1.0 - eps) * (1.0 if k == int(labels[i]) else 0.0) + eps / c
            total += -q * (row[k] - log_z)
    return total / n


def test_ce_matches_naive_loop() -> None:
    features, labels, head = _batch(n=32, seed=1)
    method = build_method("ce", CTX)
    with torch.no_grad():
        logits = head(features)
        value = method(features, labels, head)["ce"].item()
    assert value == pytest.approx(_naive_ce(logits, labels), abs=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_ls_matches_naive_loop(eps: float) -> None:
    features, labels, head = _batch(n=32, seed=2)
    method = build_method("ls", CTX, overrides={"ls": {"eps": str(eps)}})
    with torch.no_grad():
        logits = head(features)
        value = method(features, labels, head)["ls"].item()
    assert value == pytest.approx(_naive_ls(logits, labels, eps), abs=1e-6)


def test_ls_with_eps_zero_equals_ce() -> None:
    features, labels, head = _batch(n=32, seed=3)
    ce = build_method("ce", CTX)(features, labels, head)["ce"]
    ls = build_method("ls", CTX, overrides={"ls": {"eps": "0"}})(features, labels, head)["ls"]
    torch.testing.assert_close(ce, ls)
