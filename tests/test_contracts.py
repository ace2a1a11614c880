"""Contracts every registered component and task keeps, checked over the registries themselves
(timm's test_models idea): adding a method or a task gets these tests without writing them, and a
module that forgets to register fails here."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import torch
from torch import nn

import cirbench
from cirbench.engine import TrainConfig
from cirbench.errors import CirbenchError
from cirbench.methods import METHODS, MethodContext, build_method
from cirbench.methods.base import Loss, Perturbation, check_requirements, component_config
from cirbench.tasks import TASKS

PACKAGE = Path(cirbench.__file__).parent
CTX = MethodContext(num_classes=6, feature_dim=16)
LOSSES = [k for k in METHODS if issubclass(METHODS.get(k), Loss)]
PERTURBATIONS = [k for k in METHODS if issubclass(METHODS.get(k), Perturbation)]


def modules_of(folder: str) -> list[str]:
    skip = {"__init__", "base"}
    return sorted(p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem not in skip)


@pytest.mark.parametrize(("folder", "registry"), [("methods", METHODS), ("tasks", TASKS)])
def test_every_module_registers_what_it_defines(folder: str, registry: typing.Any) -> None:
    registered = {registry.get(name).__module__.rsplit(".", 1)[-1] for name in registry}
    assert set(modules_of(folder)) <= registered


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """P x K = 3 x 4 labels, as the P x K samplers give."""
    torch.manual_seed(0)
    features = torch.randn(12, CTX.feature_dim, requires_grad=True)
    return features, torch.arange(3).repeat_interleave(4)


def spec_for(key: str) -> str:
    return f"{key}+ce" if key in PERTURBATIONS else key


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_component_gives_a_finite_scalar_with_a_gradient(key: str) -> None:
    method = build_method(spec_for(key), CTX)
    method.train()
    features, labels = batch()
    head = nn.Linear(CTX.feature_dim, CTX.num_classes)
    terms = method(features, labels, head)
    total = terms["total"]
    assert total.dim() == 0 and math.isfinite(float(total.detach()))
    total.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_component_refuses_bad_overrides(key: str) -> None:
    with pytest.raises(CirbenchError, match="has no field"):
        component_config(key, {key: {"no_such_field": "1"}})
    hints = typing.get_type_hints(METHODS.get(key).Config)
    floats = [f.name for f in dataclasses.fields(METHODS.get(key).Config) if hints[f.name] is float]
    for name in floats:
        with pytest.raises(CirbenchError, match="finite"):
            component_config(key, {key: {name: "nan"}})
    if key in LOSSES:
        with pytest.raises(CirbenchError, match="weight must be >= 0"):
            component_config(key, {key: {"weight": "-1"}})


#: Values outside each component's domain (beyond the generic cases above): every registered
#: component must list its own, so a new component cannot skip its domain checks.
OUT_OF_DOMAIN: dict[str, list[tuple[str, str]]] = {
    "ce": [("weight", "abc")],
    "center": [("lr", "abc"), ("weight", "0"), ("weight", "-1e-4"), ("lr", "0"), ("mu", "1")],
    "cir": [
        ("p", "1.5"),
        ("p", "-0.1"),
        ("p", "half"),
        ("strength", "-0.1"),
        ("strength", "1.1"),
        ("momentum", "1.0"),
        ("momentum", "-0.5"),
        ("strength_mode", "gaussian"),
        ("target", "nearest"),
        ("centroids", "global"),
        ("normalize_input", "maybe"),
    ],
    "circle": [("m", "abc"), ("gamma", "0"), ("gamma", "-1"), ("m", "1.0"), ("m", "-0.1")],
    "circle-cls": [("m", "1.5"), ("gamma", "0"), ("lr", "0"), ("weight_decay", "-1")],
    "ls": [("eps", "1.0"), ("eps", "-0.1")],
    "oim": [("scalar", "0"), ("momentum", "1.0"), ("queue_size", "-1"), ("normalize", "maybe")],
    "proto": [("n_support", "0"), ("n_support", "1.5")],
    "triplet": [
        ("margin", "abc"),
        ("distance", "manhattan"),
        ("margin", "-1"),
        ("soft_margin", "maybe"),
    ],
}


def test_every_component_lists_its_out_of_domain_values() -> None:
    assert set(OUT_OF_DOMAIN) == set(METHODS)


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [(k, f, v) for k, cases in sorted(OUT_OF_DOMAIN.items()) for f, v in cases],
)
def test_out_of_domain_overrides_are_refused_naming_the_set(
    key: str, field: str, value: str
) -> None:
    with pytest.raises(CirbenchError, match=f"--set {key}"):
        build_method(spec_for(key), CTX, overrides={key: {field: value}})


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_valid_profiles_a_smoke_one_and_buildable_defaults(name: str) -> None:
    task = TASKS.get(name)()
    assert "smoke" in task.profiles and task.default_profile in task.profiles
    for profile in task.profiles:
        cfg = task.profile(profile)
        assert isinstance(cfg, TrainConfig)
        cfg.validate()
    for spec in task.default_methods:
        method = build_method(spec, CTX, defaults=task.method_defaults)
        check_requirements(method.spec, task.provides, name)
